"""Running many cases: ``files`` (paths -> cases -> results, streamed) and ``isolation`` (a
worker process that runs impls under the case time budget)."""
