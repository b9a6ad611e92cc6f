"""controller.client: the token bucket (fake clock), credential source order, pool/keep-alive/retries."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from kubernetes.config import ConfigException

from controller.client import ClientSource, TokenBucket, build_api_client, in_cluster, load_configuration
from informers import FakeClock


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return path


def test_burst_passes_at_once_then_one_token_per_period() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=2.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)        # borrowed from the future
    assert bucket.reserve() == pytest.approx(1.0)        # queued behind it
    clock.advance(1.0)
    assert bucket.reserve() == pytest.approx(0.5)


def test_wait_blocks_until_the_token_exists() -> None:
    clock = FakeClock()
    bucket = TokenBucket(qps=1.0, burst=1, clock=clock)
    assert bucket.wait() == 0.0
    done = threading.Event()
    waited: list[float] = []

    def take() -> None:
        waited.append(bucket.wait())
        done.set()

    t = threading.Thread(target=take)
    t.start()
    clock.block_until_waiters(1)
    assert not done.is_set()
    clock.advance(0.5)
    clock.block_until_waiters(1)                          # woken early? it parks again
    assert not done.is_set()
    clock.advance(0.5)
    t.join(10)
    assert waited == [pytest.approx(1.0)]


def test_zero_qps_is_unlimited() -> None:
    bucket = TokenBucket(qps=0, burst=1, clock=FakeClock())
    assert all(bucket.wait() == 0.0 for _ in range(1000))


def test_kubeconfig_flag_wins_over_the_environment(tmp_path: Path) -> None:
    flag = kubeconfig(tmp_path / "flag", "https://flag.example:6443")
    env = kubeconfig(tmp_path / "env", "https://env.example:6443")
    loaded = load_configuration(flag, environ={"KUBECONFIG": str(env), "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert loaded.source is ClientSource.FLAG
    assert loaded.configuration.host == "https://flag.example:6443"


def test_kubeconfig_env_wins_over_in_cluster(tmp_path: Path) -> None:
    env = kubeconfig(tmp_path / "env", "https://env.example:6443")
    loaded = load_configuration(environ={"KUBECONFIG": str(env), "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert loaded.source is ClientSource.ENV
    assert loaded.configuration.host == "https://env.example:6443"


def test_in_cluster_is_tried_before_home_and_fails_clearly_without_a_service_account(tmp_path: Path) -> None:
    kubeconfig((tmp_path / ".kube").mkdir() or tmp_path / ".kube" / "config", "https://home.example:6443")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster(env)
    with pytest.raises(ConfigException):               # no /var/run/secrets/... token here
        load_configuration(environ=env, home=tmp_path)


def test_home_config_is_the_last_resort(tmp_path: Path) -> None:
    kubeconfig((tmp_path / ".kube").mkdir() or tmp_path / ".kube" / "config", "https://home.example:6443")
    loaded = load_configuration(environ={}, home=tmp_path)
    assert loaded.source is ClientSource.HOME
    assert loaded.configuration.host == "https://home.example:6443"


def test_build_sizes_the_pool_and_turns_off_hidden_retries(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "kc", "https://api.example:6443")
    api = build_api_client(path, qps=5, watches=2, workers=10)
    try:
        cfg = api.configuration
        assert cfg.connection_pool_maxsize == 14
        assert cfg.keep_alive is True
        assert cfg.retries is False
        pool_kw = api.rest_client.pool_manager.connection_pool_kw
        assert pool_kw["maxsize"] == 14
        assert pool_kw["retries"].total is False          # urllib3's spelling of "never retry"
        assert pool_kw["socket_options"]                  # keep-alive socket options are set
        assert api.limiter.qps == 5
        assert api.limiter.burst == 10
        assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer t0ken"
    finally:
        api.close()
