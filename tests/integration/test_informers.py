"""The informer stack against the real API server (hack/kube-testenv): acceptance (a)-(d) of issue 3.

(a) and (d) run on the session plane; (b) and (c) on a plane of their own started with
``--watch-cache=false`` (every watch and list goes to etcd, so a compaction gives a deterministic 410
and stopping its API server disturbs no other test).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from informers import (
    ApiError,
    ApiListerWatcher,
    DeletedFinalStateUnknown,
    ReflectorConfig,
    Resource,
    SharedIndexInformer,
    WatchIdleTimeout,
    drop_managed_fields,
    meta_namespace_key,
)
from informers.testing import TcpProxy, wait_until
from kubetestenv import ControlPlane

GROUP, VERSION, PLURAL = "informers.example.com", "v1", "gadgets"
GADGETS = Resource(GROUP, VERSION, PLURAL)

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}

FAST = ReflectorConfig(backoff_initial=0.2, backoff_max=2.0, watch_idle_timeout=90.0)


def install_crd(api: client.ApiClient) -> client.CustomObjectsApi:
    ext = client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + 30
    while True:  # Established, then discovery: wait until the resource answers
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
            return custom
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def gadget(name: str, n: int = 0) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gadget", "metadata": {"name": name},
            "spec": {"n": n}}


def api_client_via(kubeconfig: str, host: str | None = None) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    if host is not None:
        cfg.host = host
    cfg.retries = False
    return client.ApiClient(cfg)


def listed(custom: client.CustomObjectsApi, ns: str) -> dict[str, str]:
    body = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    return {f"{ns}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in body["items"]}


def cached(informer: SharedIndexInformer) -> dict[str, str]:
    return {meta_namespace_key(o): o["metadata"]["resourceVersion"] for o in informer.indexer.list()}


class Mirror:
    """A handler that rebuilds the cache from events alone; it must end equal to the store."""

    def __init__(self) -> None:
        self.objects: dict[str, str] = {}
        self.tombstones: list[str] = []
        self.lock = threading.Lock()

    def on_add(self, obj: Any, is_in_initial_list: bool) -> None:
        with self.lock:
            self.objects[meta_namespace_key(obj)] = obj["metadata"]["resourceVersion"]

    def on_update(self, old: Any, new: Any) -> None:
        with self.lock:
            self.objects[meta_namespace_key(new)] = new["metadata"]["resourceVersion"]

    def on_delete(self, obj: Any) -> None:
        with self.lock:
            if isinstance(obj, DeletedFinalStateUnknown):
                self.tombstones.append(obj.key)
            self.objects.pop(meta_namespace_key(obj), None)


def start_informer(api: client.ApiClient, ns: str, cfg: ReflectorConfig = FAST,
                   errors: list[Exception] | None = None) -> tuple[SharedIndexInformer, Mirror]:
    informer = SharedIndexInformer(
        ApiListerWatcher(api, GADGETS, namespace=ns, connect_timeout=2.0, list_timeout=10.0),
        name="gadgets", transform=drop_managed_fields, reflector_config=cfg,
        watch_error_handler=errors.append if errors is not None else None,
    )
    mirror = Mirror()
    informer.add_event_handler(mirror)
    informer.start()
    assert informer.wait_for_sync(30)
    return informer, mirror


@pytest.fixture(scope="module")
def gadgets(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return install_crd(api_client)


# -- (a) ------------------------------------------------------------------------------------------

def test_a_store_equals_a_fresh_list_after_1000_objects_churn(
    gadgets: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str
) -> None:
    informer, mirror = start_informer(api_client, namespace)
    try:
        rng = random.Random(3)
        names = [f"g{i:04d}" for i in range(1000)]

        def create(name: str) -> None:
            gadgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget(name))

        def update(name: str) -> None:
            gadgets.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   {"spec": {"n": rng.randint(1, 99)}})

        def delete(name: str) -> None:
            gadgets.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, names))
            list(pool.map(update, rng.sample(names, 500)))
            list(pool.map(delete, rng.sample(names, 300)))

        truth = listed(gadgets, namespace)
        assert len(truth) == 700
        wait_until(lambda: cached(informer) == truth, timeout=30, what="the cache to match a fresh LIST")
        assert mirror.objects == truth  # the handlers saw a consistent stream of events
        assert informer.stats().lists == 1  # no relist was needed
    finally:
        informer.stop()


# -- (d) ------------------------------------------------------------------------------------------

def test_d_stalled_watch_is_detected_by_the_idle_timeout(
    control_plane: ControlPlane, gadgets: client.CustomObjectsApi, namespace: str
) -> None:
    server = urlparse(control_plane.server)
    proxy = TcpProxy(server.hostname or "127.0.0.1", server.port or 443).start()
    api = api_client_via(str(control_plane.kubeconfig), proxy.url)
    errors: list[Exception] = []
    cfg = ReflectorConfig(watch_idle_timeout=1.5, backoff_initial=0.2, backoff_max=2.0)
    informer, _ = start_informer(api, namespace, cfg, errors)
    try:
        gadgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget("before"))
        wait_until(lambda: f"{namespace}/before" in informer.indexer, what="the first object")
        proxy.stall()  # the watch connection stays open but no byte moves any more
        stalled_at = time.monotonic()
        gadgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, gadget("during"))
        wait_until(lambda: informer.stats().idle_timeouts >= 1, timeout=20, what="the idle timeout")
        detected_after = time.monotonic() - stalled_at
        # The reflector re-watched on a fresh connection, from its last RV: nothing was lost.
        wait_until(lambda: f"{namespace}/during" in informer.indexer, timeout=20, what="the missed object")
        assert any(isinstance(e, WatchIdleTimeout) for e in errors)
        assert informer.stats().lists == 1
        assert detected_after >= 1.0  # not before the idle timeout (1.5 s, minus the stall's poll slack)
        assert cached(informer) == listed(gadgets, namespace)
    finally:
        informer.stop()
        proxy.stop()
        api.close()


# -- (b), (c): a plane of our own ----------------------------------------------------------------

@pytest.fixture(scope="module")
def own_plane() -> Iterator[ControlPlane]:
    plane = ControlPlane(apiserver_args=["--watch-cache=false"]).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def own_api(own_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = api_client_via(str(own_plane.kubeconfig))
    install_crd(api)
    yield api
    api.close()


@pytest.fixture
def own_namespace(own_api: client.ApiClient) -> str:
    name = f"t-{random.getrandbits(40):010x}"
    client.CoreV1Api(own_api).create_namespace({"metadata": {"name": name}})
    return name


def test_b_compaction_410_relists_and_deletes_while_cut_off_arrive_as_tombstones(
    own_plane: ControlPlane, own_api: client.ApiClient, own_namespace: str
) -> None:
    ns = own_namespace
    custom = client.CustomObjectsApi(own_api)
    for name in ("keep", "gone-1", "gone-2"):
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, gadget(name))
    server = urlparse(own_plane.server)
    proxy = TcpProxy(server.hostname or "127.0.0.1", server.port or 443).start()
    api = api_client_via(str(own_plane.kubeconfig), proxy.url)
    errors: list[Exception] = []
    informer, mirror = start_informer(api, ns, FAST, errors)
    try:
        assert set(cached(informer)) == {f"{ns}/keep", f"{ns}/gone-1", f"{ns}/gone-2"}
        proxy.cut()  # the informer is cut off from the API server
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "gone-1")
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "gone-2")
        for i in range(3):
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "keep", {"spec": {"n": i}})
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, gadget("born"))
        own_plane.compact_etcd()
        proxy.restore()

        truth = listed(custom, ns)
        wait_until(lambda: cached(informer) == truth, timeout=40, what="the relist after 410")
        assert any(isinstance(e, ApiError) and e.status == 410 for e in errors), errors
        assert informer.stats().lists >= 2
        assert sorted(mirror.tombstones) == [f"{ns}/gone-1", f"{ns}/gone-2"]
        assert mirror.objects == truth
    finally:
        informer.stop()
        proxy.stop()
        api.close()


def test_c_informer_recovers_by_itself_after_the_api_server_restarts(
    own_plane: ControlPlane, own_api: client.ApiClient, own_namespace: str
) -> None:
    ns = own_namespace
    custom = client.CustomObjectsApi(own_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, gadget("before"))
    api = api_client_via(str(own_plane.kubeconfig))
    errors: list[Exception] = []
    informer, mirror = start_informer(api, ns, FAST, errors)
    try:
        own_plane.stop_apiserver()
        wait_until(lambda: informer.stats().errors >= 2, timeout=30, what="failed re-watches while down")
        time.sleep(2)  # stay down a while: several backoff rounds (a drill, not a race guard)
        own_plane.start_apiserver()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, gadget("after"))
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "before", {"spec": {"n": 7}})
        truth = listed(custom, ns)
        wait_until(lambda: cached(informer) == truth, timeout=60, what="recovery after the restart")
        assert mirror.objects == truth
        reg = informer.add_event_handler(Mirror())
        assert reg.has_synced()
    finally:
        informer.stop()
        api.close()


def test_factory_shares_one_informer_per_resource_and_serves_core_resources(
    gadgets: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str
) -> None:
    from informers import SharedInformerFactory, label_index_func

    gadgets.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL,
        {**gadget("labelled"), "metadata": {"name": "labelled", "labels": {"workflow": "wf-1"}}},
    )
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"k": "v"}}
    )
    factory = SharedInformerFactory(api_client, namespace=namespace)
    first = factory.informer_for(GADGETS)
    second = factory.informer_for(GADGETS, indexers={"by-workflow": label_index_func("workflow")})
    configmaps = factory.informer_for(Resource("", "v1", "configmaps"))
    assert first is second
    assert len(factory.informers()) == 2
    factory.start()
    try:
        assert factory.wait_for_cache_sync(30) == {str(GADGETS): True, "configmaps.v1": True}
        assert [o["metadata"]["name"] for o in first.indexer.by_index("by-workflow", "wf-1")] == ["labelled"]
        cm = configmaps.indexer.get_by_key(f"{namespace}/cm")
        assert cm is not None
        assert cm["data"] == {"k": "v"}
        assert "managedFields" not in cm["metadata"]  # the factory's default transform
    finally:
        factory.shutdown()
