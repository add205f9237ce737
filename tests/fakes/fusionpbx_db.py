"""A FusionPBX database on the test PostgreSQL: the tables voipctl reads and writes.

Column names and PostgreSQL types follow FusionPBX's own schema
(`app/xml_cdr/app_config.php`, `app/extensions/app_config.php`,
`app/gateways/app_config.php`, `core/domains/app_config.php`); this is a
realistic subset of their columns, with every column docs/providers.md names
(`leg` is `char(1)`, as FusionPBX declares it for PostgreSQL; docs/providers.md
counts it among the text columns), and every column `app/xml_cdr/xml_cdr_inc.php`
selects for the export (`record_path`, `record_name`, `waitsec`, ...), so the real
export script runs against it (tests/fixtures/fusionpbx/export_harness).
FusionPBX declares `enabled` flags `boolean` since 5.x; older installs (and
upgraded ones whose columns were never converted) hold the text 'true'/'false':
`legacy_text_flags=True` builds that variant.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.fakes.esl_server import Sofia


def _ddl(flag: str) -> list[str]:
    return [
        f"""
        CREATE TABLE v_domains (
            domain_uuid uuid PRIMARY KEY,
            domain_parent_uuid uuid,
            domain_name text,
            domain_enabled {flag},
            domain_description text,
            insert_date timestamptz,
            insert_user uuid,
            update_date timestamptz,
            update_user uuid
        )""",
        f"""
        CREATE TABLE v_extensions (
            extension_uuid uuid PRIMARY KEY,
            domain_uuid uuid,
            extension text,
            number_alias text,
            password text,
            accountcode text,
            effective_caller_id_name text,
            effective_caller_id_number text,
            outbound_caller_id_name text,
            outbound_caller_id_number text,
            user_context text,
            toll_allow text,
            call_timeout numeric,
            do_not_disturb boolean,
            enabled {flag},
            description text,
            insert_date timestamptz,
            insert_user uuid,
            update_date timestamptz,
            update_user uuid
        )""",
        f"""
        CREATE TABLE v_gateways (
            gateway_uuid uuid PRIMARY KEY,
            domain_uuid uuid,
            gateway text,
            username text,
            password text,
            auth_username text,
            realm text,
            from_user text,
            from_domain text,
            proxy text,
            expire_seconds numeric,
            register {flag},
            register_transport text,
            retry_seconds numeric,
            caller_id_in_from {flag},
            context text,
            profile text,
            hostname text,
            enabled {flag},
            description text,
            insert_date timestamptz,
            insert_user uuid,
            update_date timestamptz,
            update_user uuid
        )""",
        """
        CREATE TABLE v_xml_cdr (
            xml_cdr_uuid uuid PRIMARY KEY,
            domain_uuid uuid,
            provider_uuid uuid,
            extension_uuid uuid,
            sip_call_id text,
            domain_name text,
            accountcode text,
            direction text,
            default_language text,
            context text,
            caller_id_name text,
            caller_id_number text,
            caller_destination text,
            source_number text,
            destination_number text,
            start_epoch numeric,
            start_stamp timestamptz,
            answer_stamp timestamptz,
            answer_epoch numeric,
            end_epoch numeric,
            end_stamp timestamptz,
            duration numeric,
            mduration numeric,
            billsec numeric,
            billmsec numeric,
            hold_accum_seconds numeric,
            bridge_uuid text,
            read_codec text,
            write_codec text,
            remote_media_ip text,
            network_addr text,
            record_path text,
            record_name text,
            record_length numeric,
            leg char(1),
            originating_leg_uuid uuid,
            pdd_ms numeric,
            rtp_audio_in_mos numeric,
            last_app text,
            last_arg text,
            voicemail_message boolean,
            missed_call boolean,
            call_center_queue_uuid uuid,
            cc_side text,
            waitsec numeric,
            status text,
            call_disposition text,
            hangup_cause text,
            hangup_cause_q850 numeric,
            sip_hangup_disposition text,
            ring_group_uuid uuid,
            ivr_menu_uuid uuid,
            json jsonb,
            insert_date timestamptz,
            insert_user uuid,
            update_date timestamptz,
            update_user uuid
        )""",
        "CREATE INDEX v_xml_cdr_start_stamp_idx ON v_xml_cdr (start_stamp)",
        "CREATE INDEX v_xml_cdr_domain_uuid_idx ON v_xml_cdr (domain_uuid)",
    ]


def _flag(value: bool, legacy: bool) -> bool | str:
    return ("true" if value else "false") if legacy else value


class FusionDb:
    """A fresh FusionPBX-shaped database with helpers to fill and inspect it."""

    def __init__(self, url: str, *, legacy_text_flags: bool = False):
        self.url = url
        self.legacy = legacy_text_flags
        self.engine = create_engine(url, poolclass=NullPool)
        with self.engine.begin() as conn:
            for statement in _ddl("text" if legacy_text_flags else "boolean"):
                conn.execute(text(statement))
        self._domains: dict[str, uuid.UUID] = {}

    def dispose(self) -> None:
        self.engine.dispose()

    def execute(self, sql: str, **params: Any):
        with self.engine.begin() as conn:
            return conn.execute(text(sql), params)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    # -- rows -----------------------------------------------------------------

    def add_domain(self, name: str, *, enabled: bool = True) -> uuid.UUID:
        domain_uuid = uuid.uuid4()
        self.execute(
            "INSERT INTO v_domains (domain_uuid, domain_name, domain_enabled, insert_date) "
            "VALUES (:u, :n, :e, now())",
            u=domain_uuid,
            n=name,
            e=_flag(enabled, self.legacy),
        )
        self._domains[name] = domain_uuid
        return domain_uuid

    def domain_uuid(self, name: str) -> uuid.UUID:
        return self._domains.get(name) or self.add_domain(name)

    def add_extension(self, domain: str, extension: str, *, enabled: bool = True) -> uuid.UUID:
        extension_uuid = uuid.uuid4()
        self.execute(
            "INSERT INTO v_extensions (extension_uuid, domain_uuid, extension, user_context,"
            " effective_caller_id_name, effective_caller_id_number, call_timeout, enabled,"
            " insert_date) VALUES (:u, :d, :x, :ctx, :name, :x, 30, :e, now())",
            u=extension_uuid,
            d=self.domain_uuid(domain),
            x=extension,
            ctx=domain,
            name=f"Extension {extension}",
            e=_flag(enabled, self.legacy),
        )
        return extension_uuid

    def add_gateway(
        self,
        domain: str,
        name: str = "carrier",
        *,
        gateway_uuid: uuid.UUID | str | None = None,
        profile: str | None = "external",
        enabled: bool = True,
    ) -> str:
        """Add a gateway; returns its uuid as text (FusionPBX shows it lower-case)."""
        gateway_uuid = uuid.UUID(str(gateway_uuid)) if gateway_uuid else uuid.uuid4()
        self.execute(
            "INSERT INTO v_gateways (gateway_uuid, domain_uuid, gateway, username, password,"
            " proxy, expire_seconds, register, retry_seconds, context, profile, enabled,"
            " insert_date) VALUES (:u, :d, :g, 'acct', 'not-a-real-secret', 'sip.example.net',"
            " 800, :r, 30, 'public', :p, :e, now())",
            u=gateway_uuid,
            d=self.domain_uuid(domain),
            g=name,
            r=_flag(True, self.legacy),
            p=profile,
            e=_flag(enabled, self.legacy),
        )
        return str(gateway_uuid)

    def add_cdr(
        self,
        domain: str,
        *,
        direction: str = "outbound",
        extension_uuid: uuid.UUID | None = None,
        caller_id_name: str = "Caller",
        caller_id_number: str = "5192229000",
        caller_destination: str | None = None,
        destination_number: str = "15195550100",
        start: datetime | None = None,
        ring_s: int = 3,
        billsec: Decimal | int | str = 60,
        answered: bool = True,
        leg: str = "a",
        status: str | None = None,
        hangup_cause: str | None = None,
        xml_cdr_uuid: uuid.UUID | None = None,
    ) -> str:
        """Insert one v_xml_cdr row the way FusionPBX's xml_cdr import writes it."""
        start = start or datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
        billsec = Decimal(str(billsec)) if answered else Decimal(0)
        answer = start + timedelta(seconds=ring_s) if answered else None
        end = (answer or start + timedelta(seconds=20)) + timedelta(seconds=float(billsec))
        cdr_uuid = xml_cdr_uuid or uuid.uuid4()
        if status is None:
            status = "answered" if answered else "no_answer"
        if hangup_cause is None:
            hangup_cause = "NORMAL_CLEARING" if answered else "NO_ANSWER"
        self.execute(
            """
            INSERT INTO v_xml_cdr (
                xml_cdr_uuid, domain_uuid, extension_uuid, sip_call_id, domain_name, direction,
                context, caller_id_name, caller_id_number, caller_destination, source_number,
                destination_number, start_epoch, start_stamp, answer_stamp, answer_epoch,
                end_epoch, end_stamp, duration, mduration, billsec, billmsec, leg, status,
                hangup_cause, hangup_cause_q850, missed_call, insert_date
            ) VALUES (
                :u, :d, :ext, :call_id, :domain, :direction, :domain, :caller_name, :caller,
                :caller_destination, :caller, :dest, :start_epoch, :start, :answer,
                :answer_epoch, :end_epoch, :end, :duration, :duration * 1000, :billsec,
                :billsec * 1000, :leg, :status, :cause, 16, :missed, now()
            )""",
            u=cdr_uuid,
            d=self.domain_uuid(domain),
            ext=extension_uuid,
            call_id=f"{uuid.uuid4().hex}@10.0.0.5",
            domain=domain,
            direction=direction,
            caller_name=caller_id_name,
            caller=caller_id_number,
            caller_destination=caller_destination,
            dest=destination_number,
            start_epoch=int(start.timestamp()),
            start=start,
            answer=answer,
            answer_epoch=int(answer.timestamp()) if answer else 0,
            end_epoch=int(end.timestamp()),
            end=end,
            duration=int((end - start).total_seconds()),
            billsec=billsec,
            leg=leg,
            status=status,
            cause=hangup_cause,
            missed=direction == "inbound" and not answered,
        )
        return str(cdr_uuid)

    def add_many_cdrs(
        self,
        domain: str,
        count: int,
        *,
        extension_uuid: uuid.UUID,
        start: datetime,
        step_s: int = 1,
    ) -> None:
        """Insert `count` answered outbound a-legs, one every `step_s` seconds, in one statement."""
        self.execute(
            """
            INSERT INTO v_xml_cdr (xml_cdr_uuid, domain_uuid, extension_uuid, domain_name,
                direction, caller_id_number, destination_number, start_stamp, start_epoch,
                answer_stamp, end_stamp, duration, billsec, leg, status, hangup_cause)
            SELECT gen_random_uuid(), :d, :ext, :domain, 'outbound', '5192229000',
                '1519555' || lpad((n % 10000)::text, 4, '0'),
                :start + make_interval(secs => n * :step),
                extract(epoch from :start) + n * :step,
                :start + make_interval(secs => n * :step + 2),
                :start + make_interval(secs => n * :step + 2 + n % 300),
                2 + n % 300, n % 300, 'a', 'answered', 'NORMAL_CLEARING'
            FROM generate_series(0, :count - 1) AS n
            """,
            d=self.domain_uuid(domain),
            ext=extension_uuid,
            domain=domain,
            start=start,
            step=step_s,
            count=count,
        )

    # -- what FreeSWITCH loads from it -------------------------------------------

    def configured_gateways(self, profile: str) -> set[str]:
        """The gateways FusionPBX's XML handler gives a profile at a rescan.

        source: fusionpbx/fusionpbx (commit c7a00dcb3e91bd91be17b01df838d6b98321b7e2)
        app/switch/resources/scripts/app/xml_handler/resources/scripts/configuration/
        sofia.conf.lua: `from v_gateways where profile = :profile and enabled = true`,
        each `<gateway name="...">` the lower-cased gateway_uuid.
        """
        enabled = "enabled = 'true'" if self.legacy else "enabled = true"
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT gateway_uuid FROM v_gateways WHERE profile = :p AND {enabled}"),
                {"p": profile},
            ).scalars()
            return {str(u).lower() for u in rows}

    def sofia(self) -> Sofia:
        """A fake mod_sofia running every enabled gateway, rescans reading this database."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT gateway_uuid, enabled, profile FROM v_gateways")).all()
        running = {
            str(u).lower(): profile or "external"
            for u, enabled, profile in rows
            if enabled in (True, "true")
        }
        return Sofia(
            running,
            profiles=("internal", "external", *{p for _, _, p in rows if p}),
            configured=self.configured_gateways,
        )

    def add_default_settings(
        self,
        *,
        method: str = "file",
        location: str = "/var/cache/fusionpbx",
        sip_profiles: str | None = None,
    ) -> None:
        """v_default_settings with the cache and switch rows FusionPBX installs.

        source: fusionpbx/fusionpbx core/default_settings/app_config.php (the table's
        columns; cache/method "file" and cache/location "/var/cache/fusionpbx", both
        enabled) and resources/classes/switch_settings.php (switch/sip_profiles, written
        disabled); `sip_profiles` given enables that row with the value.
        """
        flag = "text" if self.legacy else "boolean"
        self.execute(
            f"""
            CREATE TABLE IF NOT EXISTS v_default_settings (
                default_setting_uuid uuid PRIMARY KEY,
                app_uuid uuid,
                default_setting_category text,
                default_setting_subcategory text,
                default_setting_name text,
                default_setting_value text,
                default_setting_order numeric,
                default_setting_enabled {flag},
                default_setting_description text,
                insert_date timestamptz,
                insert_user uuid,
                update_date timestamptz,
                update_user uuid
            )"""
        )
        rows = [
            ("cache", "method", "text", method, True),
            ("cache", "location", "text", location, True),
            ("cache", "syslog", "boolean", "false", True),
            (
                "switch",
                "sip_profiles",
                "dir",
                sip_profiles or "/etc/freeswitch/sip_profiles",
                sip_profiles is not None,
            ),
        ]
        for category, subcategory, name, value, enabled in rows:
            self.execute(
                "INSERT INTO v_default_settings (default_setting_uuid, default_setting_category,"
                " default_setting_subcategory, default_setting_name, default_setting_value,"
                " default_setting_enabled) VALUES (:u, :c, :s, :n, :v, :e)",
                u=uuid.uuid4(),
                c=category,
                s=subcategory,
                n=name,
                v=value,
                e=_flag(enabled, self.legacy),
            )

    # -- inspection -----------------------------------------------------------

    def gateway_enabled(self, gateway_uuid: str) -> Any:
        return self.scalar(
            "SELECT enabled FROM v_gateways WHERE gateway_uuid = :u", u=uuid.UUID(gateway_uuid)
        )

    def domain_enabled(self, name: str) -> Any:
        return self.scalar("SELECT domain_enabled FROM v_domains WHERE domain_name = :n", n=name)

    def extensions_enabled(self, domain: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT e.extension, e.enabled FROM v_extensions e JOIN v_domains d"
                    " ON d.domain_uuid = e.domain_uuid WHERE d.domain_name = :n"
                ),
                {"n": domain},
            )
            return dict(rows.all())
