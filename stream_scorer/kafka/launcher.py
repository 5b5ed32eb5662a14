"""A real, single-node Apache Kafka broker on 127.0.0.1, without Docker.

Apache Kafka publishes its broker to Maven Central (``org.apache.kafka:kafka_2.13``). The launcher
lets Maven resolve the broker and its dependencies into a git-ignored cache, formats KRaft storage
and starts one combined broker/controller process on free loopback ports. Internal topics get a
replication factor of 1, so consumer groups and transactions work on it.

>>> with LocalKafka() as kafka:          # doctest: +SKIP
...     print(kafka.bootstrap_servers)
127.0.0.1:40313

With ``sasl_users`` the client listener is ``SASL_PLAINTEXT`` with the PLAIN mechanism, or
SCRAM-SHA-256/512 (the controller listener stays ``PLAINTEXT`` on loopback);
:meth:`LocalKafka.client_config` gives the settings a client needs:

>>> kafka = LocalKafka(sasl_users={"alice": "alice-secret"})   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from stream_scorer.exceptions import BrokerLaunchError

logger = logging.getLogger(__name__)

KAFKA_VERSION = os.environ.get("STREAM_SCORER_KAFKA_VERSION", "4.4.0")
LOG4J_VERSION = "2.25.5"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.stream-scorer</groupId>
  <artifactId>local-kafka</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{version}</version>
    </dependency>
    <!-- command-line clients (console consumer/producer), an independent reader for tests -->
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{version}</version>
    </dependency>
    <!-- the broker's POM names no logging binding: without one it logs nothing -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def default_cache_dir() -> Path:
    """Where jars are kept: ``$STREAM_SCORER_KAFKA_CACHE``, else ``.cache/kafka`` in a source
    checkout, else ``~/.cache/stream-scorer/kafka``."""
    env = os.environ.get("STREAM_SCORER_KAFKA_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists() and (repo / "stream_scorer").is_dir():
        return repo / ".cache" / "kafka"
    return Path.home() / ".cache" / "stream-scorer" / "kafka"


def fetch_jars(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Resolve the broker's jars with Maven into ``cache_dir/<version>/lib``; reuse them if there."""
    root = (cache_dir or default_cache_dir()) / version
    lib = root / "lib"
    if (root / ".complete").exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerLaunchError("Maven (mvn) is not on PATH; it is needed to fetch the Kafka jars")
    if shutil.which("java") is None:
        raise BrokerLaunchError("java is not on PATH; Kafka 4.x needs Java 17 or newer")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(_POM.format(version=version, log4j=LOG4J_VERSION))
    staging = root / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("fetching Apache Kafka %s jars with Maven into %s", version, lib)
    proc = subprocess.run(
        [mvn, "-B", "-q", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise BrokerLaunchError(f"mvn could not fetch Kafka {version}:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    (root / ".complete").write_text(version)
    return lib


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalKafka:
    """One KRaft broker+controller process on loopback; a context manager.

    ``stop()`` keeps the data so that ``start()`` brings the same cluster back on the same port
    (for broker-restart tests); ``close()`` stops it and removes a temporary data directory.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        version: str = KAFKA_VERSION,
        cache_dir: Path | None = None,
        heap: str = "768m",
        extra_properties: dict[str, str] | None = None,
        sasl_users: dict[str, str] | None = None,
        sasl_mechanism: str = "PLAIN",
    ) -> None:
        """``sasl_users`` (name -> password): clients must authenticate with one of them over
        SASL_PLAINTEXT with ``sasl_mechanism`` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512); the broker
        talks to itself as an extra ``broker`` user. SCRAM credentials are written when storage
        is formatted (first start), so later changes to ``sasl_users`` need a fresh data dir.
        ``None`` (the default): one PLAINTEXT listener, no authentication."""
        self.version = version
        self.cache_dir = cache_dir
        self.port = port or free_port()
        self.controller_port = free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="stream-scorer-kafka-"))
        self.heap = heap
        self.extra_properties = extra_properties or {}
        if sasl_mechanism not in _SASL_MODULES:
            raise BrokerLaunchError(
                f"unsupported SASL mechanism {sasl_mechanism!r} (one of {', '.join(_SASL_MODULES)})"
            )
        self.sasl_users = dict(sasl_users) if sasl_users else None
        self.sasl_mechanism = sasl_mechanism
        # the broker's own user keeps its password across restarts on the same data dir (SCRAM
        # credentials live in the cluster metadata)
        secret = self.data_dir / "broker-sasl-password"
        self._broker_password = secret.read_text().strip() if secret.exists() else uuid.uuid4().hex
        self.process: subprocess.Popen[bytes] | None = None
        self._lib: Path | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security_protocol(self) -> str:
        return "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"

    def client_config(self, user: str | None = None) -> dict[str, str]:
        """librdkafka settings to reach this broker (as ``user``, or the broker's own user)."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        if self.sasl_users:
            password = self.sasl_users[user] if user else self._broker_password
            conf.update(
                {
                    "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": user or "broker",
                    "sasl.password": password,
                }
            )
        return conf

    def _jaas(self) -> str:
        login = (
            f"{_SASL_MODULES[self.sasl_mechanism]} required"
            f' username="broker" password="{self._broker_password}"'
        )
        if self.sasl_mechanism != "PLAIN":
            return login + ";"  # SCRAM users live in the metadata (see _scram_args)
        users = {"broker": self._broker_password, **(self.sasl_users or {})}
        return login + " " + " ".join(f'user_{name}="{pw}"' for name, pw in users.items()) + ";"

    def _scram_args(self) -> list[str]:
        """StorageTool arguments that write the SCRAM credentials at format time."""
        if not self.sasl_users or not self.sasl_mechanism.startswith("SCRAM"):
            return []
        users = {"broker": self._broker_password, **self.sasl_users}
        args = []
        for name, pw in users.items():
            args += ["--add-scram", f'{self.sasl_mechanism}=[name="{name}",password="{pw}"]']
        return args

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def _classpath(self) -> str:
        if self._lib is None:
            self._lib = fetch_jars(self.version, self.cache_dir)
        return str(self._lib / "*")

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", self._classpath(), main, *args,
        ]

    def _write_config(self) -> Path:
        logs = self.data_dir / "logs"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "log.dirs": str(logs),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if self.sasl_users:
            # Clients authenticate on SASL_PLAINTEXT; the controller listener stays PLAINTEXT on
            # loopback. No authorizer: any authenticated user may do anything.
            props.update(
                {
                    "listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{self.port}",
                    "inter.broker.listener.name": "SASL_PLAINTEXT",
                    "listener.security.protocol.map": (
                        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
                    ),
                    "sasl.enabled.mechanisms": self.sasl_mechanism,
                    "sasl.mechanism.inter.broker.protocol": self.sasl_mechanism,
                    f"listener.name.sasl_plaintext.{self.sasl_mechanism.lower()}.sasl.jaas.config": (
                        self._jaas()
                    ),
                }
            )
        props.update(self.extra_properties)
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        return path

    def start(self, timeout: float = 120.0) -> LocalKafka:
        """Fetch jars if needed, format storage on first start, start the broker, wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            if self.sasl_users:
                secret = self.data_dir / "broker-sasl-password"
                secret.write_text(self._broker_password)
                secret.chmod(0o600)
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                    "-c", str(config), "--standalone", *self._scram_args(),
                ),
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                raise BrokerLaunchError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        out = open(self.data_dir / "broker.out", "ab")  # noqa: SIM115 (lives as long as the process)
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(config), heap=self.heap),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        out.close()
        self._wait_ready(timeout)
        logger.info("Kafka %s ready on %s (pid %s)", self.version, self.bootstrap_servers, self.process.pid)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({**self.client_config(), "log_level": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrokerLaunchError(
                    f"the broker exited with code {self.process.returncode}; see {self.log_file}:\n{self._tail()}"
                )
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise BrokerLaunchError(f"the broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def _tail(self, lines: int = 30) -> str:
        for path in (self.data_dir / "broker.out", self.log_file):
            if path.exists():
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``); keep its data."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        """Stop the broker and remove its data directory if the launcher made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_SASL_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool makes)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
