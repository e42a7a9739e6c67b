from django.apps import AppConfig


class WebConfig(AppConfig):
    """The server-rendered UI: the shoppers' side (`apps.web.shop`, under /s/) and the studio
    dashboard for photographers and owners (`apps.web.studio`, under /studio/)."""

    name = "apps.web"
    label = "web"
