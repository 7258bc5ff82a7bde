"""Every model, imported once so Alembic and the drift test see the whole schema."""

from control_plane.authorization.models import AccessGeneration, ActivityLogEntry, RoleAssignment
from control_plane.content.models import (
    Blob,
    Manifest,
    ManifestReference,
    RegistryEvent,
    Repository,
    RepositoryBlob,
    Tag,
    UploadSession,
)
from control_plane.db import Base
from control_plane.deployments.models import Deployment, DeploymentOperation
from control_plane.identity.models import (
    Application,
    AuthorizationCode,
    ClientSecret,
    DeviceCode,
    DirectoryGroup,
    GroupMember,
    ServicePrincipal,
    SignInFailure,
    SigningKey,
    SignInSession,
    Subscription,
    SystemState,
    Tenant,
    User,
)
from control_plane.locks.models import ManagementLock
from control_plane.managed_identities.models import UserAssignedIdentity
from control_plane.operations.models import Operation
from control_plane.portal.models import portal_sessions
from control_plane.registries.models import Registry
from control_plane.resource_groups.models import ResourceGroup
from control_plane.throttling import ThrottleBucket

metadata = Base.metadata
# The portal keeps its table in a MetaData of its own (it imports nothing of the service); the schema includes a copy.
portal_sessions.to_metadata(metadata)

__all__ = [
    "AccessGeneration",
    "ActivityLogEntry",
    "Application",
    "AuthorizationCode",
    "Blob",
    "ClientSecret",
    "Deployment",
    "DeploymentOperation",
    "DeviceCode",
    "DirectoryGroup",
    "GroupMember",
    "ManagementLock",
    "Manifest",
    "ManifestReference",
    "Operation",
    "Registry",
    "RegistryEvent",
    "Repository",
    "RepositoryBlob",
    "ResourceGroup",
    "RoleAssignment",
    "ServicePrincipal",
    "SignInFailure",
    "SignInSession",
    "SigningKey",
    "Subscription",
    "SystemState",
    "Tag",
    "Tenant",
    "ThrottleBucket",
    "UploadSession",
    "User",
    "UserAssignedIdentity",
    "metadata",
]
