from django.urls import path

from apps.tenancy import apis

urlpatterns = [
    path("whoami", apis.WhoAmIApi.as_view(), name="tenancy-whoami"),
    path("api-keys", apis.ApiKeyCreateApi.as_view(), name="tenancy-api-key-create"),
]
