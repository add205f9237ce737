"""Helpers every job that talks to providers shares."""

from __future__ import annotations

from voipctl.providers.base import ServiceInfo
from voipctl.store.models import Service


def service_info(service: Service) -> ServiceInfo:
    """The adapter's snapshot of a service row (providers never see the store)."""
    return ServiceInfo(
        id=service.id,
        client_id=service.client_id,
        server=service.server,
        tenant=service.tenant,
        main_did=service.main_did,
        dids=tuple(service.dids or ()),
        extensions=tuple(service.extensions or ()),
        peer_id=service.peer_id,
        gateway_uuid=service.gateway_uuid,
        trunk_id=service.trunk_id,
        first_name=service.first_name,
        inbound_search=service.inbound_search,
        cdr_link=service.cdr_link,
    )
