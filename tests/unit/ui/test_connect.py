"""What answers the chat: config parsing and the routes built from WebGPU and the endpoint."""

import pytest

from app.errors import NoBackendAvailable, UsageError
from app.runtime import WebGPUReport
from app.ui.connect import CloudConfig, Connector, PageConfig
from tests.unit.conftest import run

GPU = WebGPUReport.from_probe({"api": True, "adapter": True, "features": [], "limits": {}})
NO_GPU = WebGPUReport.from_probe({"api": True, "adapter": False})
CLOUD = CloudConfig(base_url="http://127.0.0.1:9/v1", model="m", label="test")


class Local:
    name = "webllm"

    def __init__(self, app_config=None, fail=False):
        self.loaded = None
        self.fail = fail
        self.loads = []

    async def load(self, model, on_progress=None):
        self.loads.append(model)
        on_progress({"progress": 0.5})
        if self.fail:
            raise RuntimeError("no")
        self.loaded = model


def connector(config, gpu, **kw):
    c = Connector(config, make_cloud=lambda **k: type("Cloud", (), {"name": k["name"], **k})(), **kw)
    c.gpu.set(gpu)
    return c


def test_webgpu_loads_the_configured_model_once_and_routes_to_it():
    local = Local()
    c = connector(PageConfig(model="M"), GPU, make_local=lambda **k: local)
    client = run(c.client())
    assert run(c.client()) is client and local.loads == ["M"]
    assert [r.backend for r in client.backend.routes] == [local]
    assert c.describe() == "Answers come from M, running on this device."


def test_without_webgpu_only_the_endpoint_and_without_both_a_typed_error():
    c = connector(PageConfig(model="M", cloud=CLOUD), NO_GPU)
    client = run(c.client())
    assert [r.backend.name for r in client.backend.routes] == ["test"]
    assert "test (m)" in c.describe()
    with pytest.raises(NoBackendAvailable, match="no WebGPU"):
        run(connector(PageConfig(model="M"), NO_GPU).client())


def test_a_failed_load_falls_back_to_the_endpoint_and_says_so():
    local = Local(fail=True)
    c = connector(PageConfig(model="M", cloud=CLOUD), GPU, make_local=lambda **k: local)
    client = run(c.client())
    assert len(client.backend.routes) == 2
    assert "could not load" in c.status.peek()


def test_config_and_form_validation():
    assert PageConfig.from_dict(None).policy == "prefer-local"
    with pytest.raises(UsageError):
        PageConfig.from_dict({"policy": "fastest"})
    with pytest.raises(UsageError):
        CloudConfig.parse({"base_url": "ftp://x", "model": "m"})
    with pytest.raises(UsageError):
        CloudConfig.parse({"base_url": "https://x/v1/", "model": ""})
    assert CloudConfig.parse({"base_url": ""}) is None
    cloud = CloudConfig.parse({"base_url": "https://api.example/v1/", "model": "m", "api_key": "k"})
    assert cloud.base_url == "https://api.example/v1" and cloud.label == "api.example"
    assert "api_key" not in cloud.to_record()
