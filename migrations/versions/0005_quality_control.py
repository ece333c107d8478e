"""quality control: media grants with the playback record, time on task, excluded raters

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 02:10:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("what", sa.String(length=16), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("side", sa.String(length=1), nullable=True),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total_bytes", sa.Integer(), nullable=True),
        sa.Column("served_ranges", sa.JSON(), nullable=False),
        sa.Column("bytes_served", sa.Integer(), nullable=False),
        sa.Column("serves", sa.Integer(), nullable=False),
        sa.Column("first_served_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('audit', 'listen')", name=op.f("ck_media_grants_kind")),
        sa.CheckConstraint("what IN ('audio', 'spectrogram')", name=op.f("ck_media_grants_what")),
        sa.ForeignKeyConstraint(["assignment_id"], ["audit_assignments.id"],
                                name=op.f("fk_media_grants_assignment_id_audit_assignments"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["item_id"], ["listening_items.id"],
                                name=op.f("fk_media_grants_item_id_listening_items"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["listening_sessions.id"],
                                name=op.f("fk_media_grants_session_id_listening_sessions"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_media_grants_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_grants")),
        sa.UniqueConstraint("token", name=op.f("uq_media_grants_token")),
    )
    with op.batch_alter_table("media_grants", schema=None) as batch_op:
        batch_op.create_index("ix_media_grants_user_assignment", ["user_id", "assignment_id"], unique=False)
        batch_op.create_index("ix_media_grants_user_item", ["user_id", "item_id"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("excluded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("excluded_by", sa.String(length=100), nullable=True))
    with op.batch_alter_table("audit_assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_on_task_ms", sa.Integer(), nullable=True))
    with op.batch_alter_table("listening_ratings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("served_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("time_on_task_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("listening_ratings", schema=None) as batch_op:
        batch_op.drop_column("time_on_task_ms")
        batch_op.drop_column("served_at")
    with op.batch_alter_table("audit_assignments", schema=None) as batch_op:
        batch_op.drop_column("time_on_task_ms")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("excluded_by")
        batch_op.drop_column("excluded_at")
    with op.batch_alter_table("media_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_media_grants_user_item")
        batch_op.drop_index("ix_media_grants_user_assignment")
    op.drop_table("media_grants")
