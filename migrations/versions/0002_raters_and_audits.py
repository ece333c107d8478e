"""raters and audits: users (argon2 hashes), the audit queue and blind audit assignments

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:16:16.240662
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('admin', 'rater')", name=op.f('ck_users_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('audit_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pair_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=True),
    sa.Column('a_is_winner', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('skip_reason', sa.String(length=200), nullable=True),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('assigned', 'done', 'skipped')", name=op.f('ck_audit_assignments_state')),
    sa.CheckConstraint("verdict IS NULL OR verdict IN ('A', 'B', 'both_good', 'both_bad')", name=op.f('ck_audit_assignments_verdict')),
    sa.ForeignKeyConstraint(['pair_id'], ['pairs.id'], name=op.f('fk_audit_assignments_pair_id_pairs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_audit_assignments_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_assignments')),
    sa.UniqueConstraint('pair_id', 'slot', name=op.f('uq_audit_assignments_pair_id_slot')),
    sa.UniqueConstraint('pair_id', 'user_id', name=op.f('uq_audit_assignments_pair_id_user_id'))
    )
    with op.batch_alter_table('audit_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_assignments_user_id'), ['user_id'], unique=False)
        batch_op.create_index('ix_audit_assignments_user_state', ['user_id', 'state'], unique=False)

    op.create_table('audit_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pair_id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Float(), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('overlap', sa.Integer(), nullable=False),
    sa.Column('added_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('overlap >= 1', name=op.f('ck_audit_items_overlap')),
    sa.ForeignKeyConstraint(['pair_id'], ['pairs.id'], name=op.f('fk_audit_items_pair_id_pairs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_items')),
    sa.UniqueConstraint('pair_id', name=op.f('uq_audit_items_pair_id'))
    )
    with op.batch_alter_table('audit_items', schema=None) as batch_op:
        batch_op.create_index('ix_audit_items_priority', ['priority'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('audit_items', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_items_priority')

    op.drop_table('audit_items')
    with op.batch_alter_table('audit_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_assignments_user_state')
        batch_op.drop_index(batch_op.f('ix_audit_assignments_user_id'))

    op.drop_table('audit_assignments')
    op.drop_table('users')
