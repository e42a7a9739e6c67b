"""A pager's links keep the rest of the query: the event page lists photos and products, each
with its own pager, and the sales list may be filtered to prints to ship."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.template.loader import render_to_string
from django.test import RequestFactory


def pager(query: str, *, number: int, **options: str) -> str:
    request = RequestFactory().get(f"/studio/events/1/?{query}")
    page = Paginator(list(range(100)), 10).page(number)
    return render_to_string("studio/_pager.html", {"page": page, **options}, request=request)


def test_turning_one_lists_page_keeps_the_others() -> None:
    # when: the photos are on page 2 and the products on page 3
    html = pager("page=2&products_page=3", number=3, pager_param="products_page", pager_anchor="#products")
    # then: the products' links change their own page and keep the photos' page
    assert 'href="?page=2&amp;products_page=2#products" rel="prev"' in html
    assert 'href="?page=2&amp;products_page=4#products" rel="next"' in html


def test_a_filtered_list_keeps_its_filter() -> None:
    html = pager("to_ship=1&page=1", number=1)
    assert 'href="?to_ship=1&amp;page=2" rel="next"' in html
