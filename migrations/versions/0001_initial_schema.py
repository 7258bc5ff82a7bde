"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27 04:12:27.588581
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('operations',
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('resource_id', sa.String(length=1024), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=128), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operations'))
    )
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.create_index('ix_operations_due', ['status', 'not_before'], unique=False)
        batch_op.create_index(batch_op.f('ix_operations_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('private_key_encrypted', sa.Text(), nullable=False),
    sa.Column('public_jwk', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_signing_keys'))
    )
    op.create_table('system_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_system_state'))
    )
    op.create_table('tenants',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants'))
    )
    op.create_table('role_assignments',
    sa.Column('name', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('scope', sa.String(length=1024), nullable=False),
    sa.Column('scope_key', sa.String(length=1024), nullable=False),
    sa.Column('role_definition_id', sa.String(length=36), nullable=False),
    sa.Column('principal_id', sa.String(length=36), nullable=False),
    sa.Column('principal_type', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_on', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_on', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('updated_by', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_role_assignments_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_role_assignments')),
    sa.UniqueConstraint('scope_key', 'role_definition_id', 'principal_id', name=op.f('uq_role_assignments_scope_key_role_definition_id_principal_id'))
    )
    with op.batch_alter_table('role_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_role_assignments_principal_id'), ['principal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_role_assignments_scope_key'), ['scope_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_role_assignments_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('service_principals',
    sa.Column('object_id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('is_tenant_admin', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_service_principals_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('object_id', name=op.f('pk_service_principals')),
    sa.UniqueConstraint('app_id', name=op.f('uq_service_principals_app_id'))
    )
    with op.batch_alter_table('service_principals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_principals_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('subscriptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('tenant_id', sa.String(length=36), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_subscriptions_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('client_secrets',
    sa.Column('key_id', sa.String(length=36), nullable=False),
    sa.Column('principal_object_id', sa.String(length=36), nullable=False),
    sa.Column('secret_hash', sa.String(length=128), nullable=False),
    sa.Column('hint', sa.String(length=8), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['principal_object_id'], ['service_principals.object_id'], name=op.f('fk_client_secrets_principal_object_id_service_principals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key_id', name=op.f('pk_client_secrets'))
    )
    with op.batch_alter_table('client_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_client_secrets_principal_object_id'), ['principal_object_id'], unique=False)

    op.create_table('resource_groups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=90), nullable=False),
    sa.Column('name_key', sa.String(length=90), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('managed_by', sa.String(length=1024), nullable=True),
    sa.Column('provisioning_state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_resource_groups_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resource_groups')),
    sa.UniqueConstraint('subscription_id', 'name_key', name=op.f('uq_resource_groups_subscription_id_name_key'))
    )
    op.create_table('registries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('resource_group_id', sa.String(length=36), nullable=False),
    sa.Column('resource_group_name', sa.String(length=90), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('name_key', sa.String(length=50), nullable=False),
    sa.Column('location', sa.String(length=64), nullable=False),
    sa.Column('sku', sa.String(length=16), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('identity', sa.JSON(), nullable=True),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('provisioning_state', sa.String(length=16), nullable=False),
    sa.Column('container_name', sa.String(length=63), nullable=False),
    sa.Column('admin_password_1', sa.Text(), nullable=False),
    sa.Column('admin_password_2', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=False),
    sa.Column('created_by_type', sa.String(length=32), nullable=False),
    sa.Column('modified_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('modified_by', sa.String(length=256), nullable=False),
    sa.Column('modified_by_type', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['resource_group_id'], ['resource_groups.id'], name=op.f('fk_registries_resource_group_id_resource_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_registries_subscription_id_subscriptions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registries')),
    sa.UniqueConstraint('container_name', name=op.f('uq_registries_container_name')),
    sa.UniqueConstraint('name_key', name=op.f('uq_registries_name_key'))
    )
    with op.batch_alter_table('registries', schema=None) as batch_op:
        batch_op.create_index('ix_registries_group_name', ['resource_group_id', 'name_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_registries_subscription_id'), ['subscription_id'], unique=False)
        batch_op.create_index('ix_registries_subscription_name', ['subscription_id', 'name_key'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('registries', schema=None) as batch_op:
        batch_op.drop_index('ix_registries_subscription_name')
        batch_op.drop_index(batch_op.f('ix_registries_subscription_id'))
        batch_op.drop_index('ix_registries_group_name')

    op.drop_table('registries')
    op.drop_table('resource_groups')
    with op.batch_alter_table('client_secrets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_client_secrets_principal_object_id'))

    op.drop_table('client_secrets')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriptions_tenant_id'))

    op.drop_table('subscriptions')
    with op.batch_alter_table('service_principals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_principals_tenant_id'))

    op.drop_table('service_principals')
    with op.batch_alter_table('role_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_role_assignments_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_role_assignments_scope_key'))
        batch_op.drop_index(batch_op.f('ix_role_assignments_principal_id'))

    op.drop_table('role_assignments')
    op.drop_table('tenants')
    op.drop_table('system_state')
    op.drop_table('signing_keys')
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_operations_subscription_id'))
        batch_op.drop_index('ix_operations_due')

    op.drop_table('operations')

