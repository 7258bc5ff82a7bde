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
    ClientSecret,
    DirectoryGroup,
    GroupMember,
    ServicePrincipal,
    SignInFailure,
    SigningKey,
    Subscription,
    SystemState,
    Tenant,
    User,
)
from control_plane.locks.models import ManagementLock
from control_plane.operations.models import Operation
from control_plane.registries.models import Registry
from control_plane.resource_groups.models import ResourceGroup
from control_plane.throttling import ThrottleBucket

metadata = Base.metadata

__all__ = [
    "AccessGeneration", "ActivityLogEntry", "Application", "Blob", "ClientSecret", "Deployment", "DeploymentOperation",
    "DirectoryGroup", "GroupMember",
    "ManagementLock", "Manifest", "ManifestReference", "Operation", "Registry", "RegistryEvent", "Repository",
    "RepositoryBlob", "ResourceGroup", "RoleAssignment", "ServicePrincipal", "SignInFailure", "SigningKey",
    "Subscription", "SystemState", "Tag", "Tenant", "ThrottleBucket", "UploadSession", "User", "metadata",
]
