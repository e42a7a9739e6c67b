"""The shoppers' pages under /s/<studio>/ (see apps/web/shop/urls.py for the map)."""
