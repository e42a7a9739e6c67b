"""Admin for platform superusers (runs in the audited system context, see middleware).

Memberships decide who may see a studio's sales and wallet and who is paid: they are added
through `membership_add`, a role set by adding the member again (`member_role_set`) and
removed through `member_remove`, all audited, never edited in place, and a studio always
keeps an owner. Pending invitations are read-only here. API keys are issued by studios; here
they can only be revoked, through the audited
`api_key_revoke` (a revoked key never comes back).
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import ngettext

from apps.core.admin_base import ReadOnlyAdmin, is_platform_superuser
from apps.core.problems import DomainError
from apps.tenancy.models import ApiKey, AuditLog, Membership, MembershipInvitation, Organization, User
from apps.tenancy.services import OWNER_ROLE, api_key_revoke, member_remove, member_role_set, membership_add


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    """A studio is added by `manage.py tenant_create` (audited) and keeps its slug: the slug is in
    every shop link, order link and receipt already sent, and LEDGER_WHALE_TENANTS may name a
    studio by it (a rename would move its ledger partition). Its name may change. Studios are
    never deleted here: their sales, ledger rows and audit rows must stay."""

    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("slug", "created_at") if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # `manage.py tenant_create` (organization_create, audited; owner and API key)


class DarkroomUserCreationForm(AdminUserCreationForm):
    """Django's add form, with the e-mail address: it is unique (a second account added without
    one broke `tenancy_user_email_key`, a 500), and compared whatever its case, as invitations
    and password resets match an address."""

    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def clean_email(self) -> str:
        return _email_nobody_else_has(str(self.cleaned_data["email"]), user=None)


class DarkroomUserChangeForm(UserChangeForm):
    """Django's change form, with the add form's rule: no other account has the e-mail address,
    whatever its case (the account's own address in another case is fine)."""

    class Meta(UserChangeForm.Meta):
        model = User

    def clean_email(self) -> str:
        return _email_nobody_else_has(str(self.cleaned_data["email"]), user=self.instance)


def _email_nobody_else_has(email: str, *, user: User | None) -> str:
    """`email`, unless an account other than `user` has it in any case (a form error then)."""
    others = User.objects.filter(email__iexact=email)
    if user is not None and user.pk is not None:
        others = others.exclude(pk=user.pk)
    if others.exists():
        raise forms.ValidationError("Someone already has an account with this e-mail address.")
    return email


@admin.register(User)
class DarkroomUserAdmin(UserAdmin):
    add_form = DarkroomUserCreationForm
    form = DarkroomUserChangeForm
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "usable_password", "password1", "password2")}),
    )


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("user", "tenant", "role")

    def clean(self) -> dict[str, Any]:
        """Refuse, in the form, to demote a studio's last owner (the service refuses it too,
        under the owners' lock, should two changes race)."""
        data = super().clean() or {}
        tenant, user, role = data.get("tenant"), data.get("user"), data.get("role")
        if tenant is not None and user is not None and role != OWNER_ROLE and _is_last_owner(tenant.pk, user.pk):
            raise forms.ValidationError(f"{user} is the last owner of {tenant}: make another member an owner first.")
        return data

    def _get_validation_exclusions(self) -> set[str]:
        # Adding an existing member sets their role (member_role_set): the (tenant, user)
        # constraint must not refuse it as a duplicate. The form still validates both fields.
        return {*super()._get_validation_exclusions(), "tenant", "user"}  # type: ignore[misc]


def _label(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def _is_last_owner(tenant_id: int, user_id: int) -> bool:
    owners = set(Membership.objects.filter(tenant_id=tenant_id, role=OWNER_ROLE).values_list("user_id", flat=True))
    return owners == {user_id}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipAdminForm
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email", "tenant__slug")
    raw_id_fields = ("user", "tenant")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Platform superusers only: staff who are also a studio's members act for that studio here.
        return is_platform_superuser(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # add the membership again with the new role: the audited services set it

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Platform superusers only; never offer to remove a studio's last owner (member_remove
        # refuses it in any case).
        if not is_platform_superuser(request):
            return False
        return obj is None or not (obj.role == OWNER_ROLE and _is_last_owner(obj.tenant_id, obj.user_id))

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        existing = Membership.objects.filter(tenant=obj.tenant, user=obj.user).first()
        if existing is None:
            saved = membership_add(tenant=obj.tenant, user=obj.user, role=obj.role)
        else:
            saved = member_role_set(
                tenant=obj.tenant, user_id=obj.user.pk, role=obj.role, actor=None, actor_label=_label(request)
            )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        member_remove(tenant=obj.tenant, user_id=obj.user_id, actor=None, actor_label=_label(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("tenant"):
            try:
                member_remove(
                    tenant=membership.tenant, user_id=membership.user_id, actor=None, actor_label=_label(request)
                )
            except DomainError as exc:
                messages.error(request, f"{membership}: {exc.detail}")


@admin.register(MembershipInvitation)
class MembershipInvitationAdmin(ReadOnlyAdmin):
    """Invitations, to browse: only the invited person accepts or declines one (until its
    `expires_at`), and the studio withdraws or renews it; adding the membership here instead
    (`membership_add`) drops the invitation."""

    list_display = ("user", "tenant", "role", "invited_by", "created_at", "expires_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email", "tenant__slug")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """The key's hash is never shown: it is what authentication and its cache look a key up by."""

    list_display = ("name", "tenant", "prefix", "created_at", "revoked_at")
    fields = ("name", "tenant", "prefix", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("=prefix", "name", "tenant__slug")
    actions = ("revoke",)

    @admin.action(
        description="Revoke the selected API keys (audited; they stop working at once)", permissions=["superuser"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        """Says how many this revoked, and how many were revoked already (by then)."""
        keys = list(queryset.select_related("tenant"))
        revoked = sum(
            api_key_revoke(tenant=key.tenant, api_key_id=key.pk, actor=request.user)  # type: ignore[arg-type]
            for key in keys
        )
        already = f"; {len(keys) - revoked} already revoked" if revoked < len(keys) else ""
        revoked_keys = ngettext("%(count)d API key", "%(count)d API keys", revoked) % {"count": revoked}
        messages.success(request, f"Revoked {revoked_keys}{already}.")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "tenant", "actor_label", "action", "target_type", "target_id", "request_id")
    list_select_related = ("tenant",)  # nullable (platform rows): Django would not join it itself
    list_filter = ("action",)
    search_fields = ("request_id", "target_id", "actor_label")
