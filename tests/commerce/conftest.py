from tests.commerce.fixtures import celery_worker_thread, shop_a, shop_b  # noqa: F401
