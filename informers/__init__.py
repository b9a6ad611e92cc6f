"""A client-go-grade informer stack on raw JSON.

What belongs here: the reflector (paginated LIST + WATCH with bookmarks, relist on 410, backoff),
the thread-safe store and indexers, the shared informer that fans events out to handlers, the
workqueue family (plain, delaying, rate limiting) and rate limiters, and an injected ``Clock``.

This package knows nothing of workflows or steps: it works on any resource given its
group/version/plural, and hands out plain ``dict`` objects parsed from the API server's JSON
(never the client's generated models). Objects it hands out are read-only.
"""
