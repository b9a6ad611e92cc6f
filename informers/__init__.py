"""A client-go-grade informer stack on raw JSON.

What belongs here: the reflector (paginated LIST + WATCH with bookmarks, relist on 410, backoff),
the thread-safe store and indexers, the shared informer that fans events out to handlers, the
workqueue family (plain, delaying, rate limiting) and rate limiters, and an injected ``Clock``.

This package knows nothing of workflows or steps: it works on any resource given its
group/version/plural, and hands out plain ``dict`` objects parsed from the API server's JSON
(never the client's generated models). Objects it hands out are read-only.

Modules (one concept each)::

    clock               Clock protocol, RealClock, FakeClock (tests advance it)
    workqueue           Queue: dirty/processing sets, priorities, shutdown(+drain), ``with q.get() as key``
    delaying            DelayingQueue: add_after (earliest ready time wins), one waiting thread
    ratelimit           per-item exponential (tenacity wait strategies), token bucket, max-of
    ratelimiting_queue  RateLimitingQueue: add_rate_limited / forget / num_requeues
    metrics             workqueue metric hooks with client-go's names (no-op by default)
    frozen              deep-frozen dict/list: what the cache hands out
    store               Indexer (thread-safe store + indices; plain, or compact: JSON bytes), keys, tombstones
    errors              the exception tree and its predicates
    listwatch           ListerWatcher protocol; ApiListerWatcher (raw JSON via the official client)
    reflector           LIST (paged consistent reads, or client-go's RV rules) + WATCH, backoff, 410 rules
    shared_informer     SharedIndexInformer: one reflector, many handlers, resync from memory
    handlers            EnqueueHandler (low priority for initial-list and resync events)
    factory             SharedInformerFactory
    testing             FakeListerWatcher, RecordingHandler, InMemoryMetricsProvider, TcpProxy

Typical use::

    factory = SharedInformerFactory(api_client, namespace="team-a")
    steps = factory.informer_for(Resource("workflow.example.com", "v1alpha1", "steps"),
                                 indexers={"by-workflow": label_index_func("workflow")})
    queue: RateLimitingQueue[str] = RateLimitingQueue("steps")
    steps.add_event_handler(EnqueueHandler(queue))
    factory.start(); factory.wait_for_cache_sync(120)
    with queue.get() as key: ...   # in each worker; forget(key) on success, add_rate_limited on error
"""

from informers.clock import Clock, FakeClock, RealClock
from informers.delaying import DelayingQueue
from informers.errors import (
    ApiError,
    InformerError,
    TransportError,
    VeryShortWatchError,
    WatchIdleTimeout,
    is_expired,
    is_retriable_watch_error,
    is_too_large_resource_version,
)
from informers.factory import SharedInformerFactory
from informers.frozen import FrozenDict, FrozenList, freeze, thaw
from informers.handlers import EnqueueHandler
from informers.listwatch import ApiListerWatcher, ListerWatcher, ListOptions, ListPage, Resource, WatchStream
from informers.metrics import MetricsProvider, NoopMetricsProvider
from informers.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from informers.ratelimiting_queue import RateLimitingQueue
from informers.reflector import Reflector, ReflectorConfig, ReflectorStats
from informers.shared_informer import (
    HandlerRegistration,
    ResourceEventHandler,
    ResourceEventHandlerFuncs,
    SharedIndexInformer,
)
from informers.store import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    drop_managed_fields,
    label_index_func,
    meta_namespace_key,
    owner_index_func,
    split_key,
)
from informers.workqueue import Got, Queue, ShutDown

__all__ = [
    "NAMESPACE_INDEX",
    "ApiError",
    "ApiListerWatcher",
    "BucketRateLimiter",
    "Clock",
    "DelayingQueue",
    "DeletedFinalStateUnknown",
    "EnqueueHandler",
    "FakeClock",
    "FrozenDict",
    "FrozenList",
    "Got",
    "HandlerRegistration",
    "Indexer",
    "InformerError",
    "ItemExponentialFailureRateLimiter",
    "ListOptions",
    "ListPage",
    "ListerWatcher",
    "MaxOfRateLimiter",
    "MetricsProvider",
    "NoopMetricsProvider",
    "Queue",
    "RateLimiter",
    "RateLimitingQueue",
    "RealClock",
    "Reflector",
    "ReflectorConfig",
    "ReflectorStats",
    "Resource",
    "ResourceEventHandler",
    "ResourceEventHandlerFuncs",
    "SharedIndexInformer",
    "SharedInformerFactory",
    "ShutDown",
    "TransportError",
    "VeryShortWatchError",
    "WatchIdleTimeout",
    "WatchStream",
    "default_controller_rate_limiter",
    "drop_managed_fields",
    "freeze",
    "is_expired",
    "is_retriable_watch_error",
    "is_too_large_resource_version",
    "label_index_func",
    "meta_namespace_key",
    "owner_index_func",
    "split_key",
    "thaw",
]
