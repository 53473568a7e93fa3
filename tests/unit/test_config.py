"""What a deployment and a user may configure: checked when read, with the field named."""

import pytest

from app import router as router_module
from app.config import POLICIES, CloudConfig, PageConfig, check_endpoint_url
from app.errors import InvalidRequest, UsageError
from app.models.catalog import validate_record


def test_config_validation():
    assert POLICIES == router_module.POLICIES
    assert PageConfig.from_dict(None).policy == "prefer-local"
    with pytest.raises(UsageError):
        PageConfig.from_dict({"policy": "fastest"})
    with pytest.raises(UsageError, match="limits.first_token_s"):
        PageConfig.from_dict({"limits": {"first_token_s": 0}})
    with pytest.raises(UsageError, match="unknown"):
        PageConfig.from_dict({"limits": {"first_token": 3}})
    with pytest.raises(UsageError, match="builtin"):
        PageConfig.from_dict({"builtin": "yes"})
    with pytest.raises(UsageError):
        CloudConfig.parse({"base_url": "ftp://x", "model": "m"})
    with pytest.raises(UsageError):
        CloudConfig.parse({"base_url": "https://x/v1/", "model": ""})
    assert CloudConfig.parse({"base_url": ""}) is None
    cloud = CloudConfig.parse({"base_url": "https://api.example/v1/", "model": "m", "api_key": "k"})
    assert cloud.base_url == "https://api.example/v1" and cloud.label == "api.example"
    assert "api_key" not in cloud.to_record()


def test_an_endpoints_context_window_is_a_whole_number_kept_for_its_url():
    cloud = PageConfig.from_dict({"cloud": {"base_url": "http://127.0.0.1:8080/v1", "model": "m",
                                            "context_window": 2048}}).cloud
    assert cloud.context_window == 2048 and CloudConfig.parse(cloud.to_record()) == cloud
    # The settings form has no such field: the window stays with the same URL, goes with another.
    again = CloudConfig.parse({"base_url": "http://127.0.0.1:8080/v1", "model": "m2"}, previous=cloud)
    assert again.context_window == 2048
    other = CloudConfig.parse({"base_url": "http://127.0.0.1:9090/v1", "model": "m"}, previous=cloud)
    assert other.context_window is None
    with pytest.raises(UsageError, match="context_window must be a whole number"):
        CloudConfig.parse({"base_url": "http://127.0.0.1:8080/v1", "model": "m", "context_window": "lots"})


@pytest.mark.parametrize("url, why", [
    ("https://user:pass@api.example/v1", "user name or password"),
    ("https://sk-abc123@api.example/v1", "user name or password"),
    ("https://api.example/v1?key=sk-1", "query"),
    ("https://api.example/v1#frag", "fragment"),
    ("https://api.example/v1?", "query"),
    ("https://api.example:99999/v1", "with a host"),
    ("file:///etc/passwd", "with a host"),
])
def test_endpoint_urls_that_would_leak_or_break_are_refused(url, why):
    with pytest.raises(UsageError, match=why):
        check_endpoint_url(url)
    with pytest.raises(UsageError):
        CloudConfig.parse({"base_url": url, "model": "m"})


def test_an_https_page_may_call_http_only_on_this_machine():
    with pytest.raises(UsageError, match="must be https"):
        check_endpoint_url("http://api.example/v1", secure_page=True)
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1",
                "http://ollama.localhost/v1"):
        assert check_endpoint_url(url, secure_page=True) == url
    assert check_endpoint_url("http://api.example/v1/") == "http://api.example/v1"  # an http page may


def test_a_key_is_never_carried_to_another_origin():
    old = CloudConfig.parse({"base_url": "https://api.one/v1", "model": "m", "api_key": "sk-one", "label": "One"})
    # Only the URL changed: the key left in the form belonged to the old provider.
    moved = CloudConfig.parse({"base_url": "https://api.two/v1", "model": "m", "api_key": "sk-one"}, previous=old)
    assert moved.api_key == "" and moved.label == "api.two"
    typed = CloudConfig.parse({"base_url": "https://api.two/v1", "model": "m", "api_key": "sk-two"}, previous=old)
    assert typed.api_key == "sk-two"
    same = CloudConfig.parse({"base_url": "https://api.one/v1/", "model": "n", "api_key": "sk-one"}, previous=old)
    assert same.api_key == "sk-one" and same.label == "One"


def test_a_model_id_with_a_trailing_newline_is_refused():
    record = {"model_id": "my-model\n", "model": "https://h.test/m", "model_lib": "https://h.test/l.wasm"}
    with pytest.raises(InvalidRequest) as info:
        validate_record(record)
    assert info.value.param == "model_id"
