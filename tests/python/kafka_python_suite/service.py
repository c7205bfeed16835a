"""Stand-in for kafka-python's `test/service.py`, which its source
distribution on PyPI does not ship. Only the external-broker mode is used
(KAFKA_URI): the broker is already running, so there is nothing to spawn,
stop or show logs of."""


class ExternalService:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    def start(self):
        pass

    def stop(self):
        pass

    def dump_logs(self):
        pass

    def wait_for(self, pattern, timeout=30):
        return True


class SpawnedService:
    def __init__(self, args=None, env=None):
        raise RuntimeError("spawning a broker is not supported: set KAFKA_URI")
