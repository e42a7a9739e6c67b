from tests.commerce.fixtures import celery_worker_thread, row_lock_strategy, shop_a, shop_b  # noqa: F401
