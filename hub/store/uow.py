"""A unit of work: one transaction, with one repository per concern and the read models' queries.

Services reach the database only through these attributes; every method returns domain objects
(hub.domain.stored and the rules' own types), never rows.
"""

from __future__ import annotations

from sqlalchemy import Connection

from hub.store.audit import AuditRepository
from hub.store.consents import ConsentRepository
from hub.store.cycles import CycleRepository
from hub.store.deliveries import DeliveryRepository
from hub.store.directory import DirectoryRepository
from hub.store.maintenance import TableStatistics
from hub.store.matching import MatchingQueries
from hub.store.pool import PoolQueries
from hub.store.records import RecordRepository
from hub.store.statistics import StatisticsQueries


class UnitOfWork:
    """One transaction's worth of reads and writes, rolled back unless ``commit()`` is called."""

    def __init__(self, conn: Connection, is_sqlite: bool) -> None:
        self.conn = conn
        self.is_sqlite = is_sqlite
        self.committed = False
        self.records = RecordRepository(conn, is_sqlite)
        self.directory = DirectoryRepository(conn, is_sqlite)
        self.consents = ConsentRepository(conn, is_sqlite)
        self.audit = AuditRepository(conn, is_sqlite)
        self.deliveries = DeliveryRepository(conn, is_sqlite)
        self.cycles = CycleRepository(conn, is_sqlite)
        self.pool = PoolQueries(conn, is_sqlite)
        self.matching = MatchingQueries(conn, is_sqlite)
        self.statistics = StatisticsQueries(conn, is_sqlite)
        self.maintenance = TableStatistics(conn, is_sqlite)

    def commit(self) -> None:
        self.committed = True
