"""The contract suite's fixtures beside tests/conftest.py's: the MariaDB server of the
Asterisk tests, for the asterisk-table kit."""

from tests.providers.asterisk.conftest import mariadb  # noqa: F401 - a fixture
