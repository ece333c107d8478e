"""listening sessions: clip sets, OVL/REL listening sessions and ratings (arXiv 2404.09956 §5.3)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('clip_sets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('generator', sa.String(length=100), nullable=False),
    sa.Column('checkpoint_id', sa.String(length=500), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clip_sets')),
    sa.UniqueConstraint('name', name=op.f('uq_clip_sets_name'))
    )
    op.create_table('listening_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('min_raters', sa.Integer(), nullable=False),
    sa.Column('gold_rel_threshold', sa.Float(), nullable=False),
    sa.Column('is_open', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('gold_rel_threshold >= 1 AND gold_rel_threshold <= 5', name=op.f('ck_listening_sessions_gold_threshold_range')),
    sa.CheckConstraint('min_raters >= 1', name=op.f('ck_listening_sessions_min_raters_positive')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_listening_sessions_created_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listening_sessions')),
    sa.UniqueConstraint('name', name=op.f('uq_listening_sessions_name'))
    )
    op.create_table('listening_systems',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('clip_set_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['clip_set_id'], ['clip_sets.id'], name=op.f('fk_listening_systems_clip_set_id_clip_sets'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['listening_sessions.id'], name=op.f('fk_listening_systems_session_id_listening_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listening_systems')),
    sa.UniqueConstraint('session_id', 'clip_set_id', name=op.f('uq_listening_systems_session_id_clip_set_id'))
    )
    with op.batch_alter_table('listening_systems', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_listening_systems_session_id'), ['session_id'], unique=False)

    op.create_table('clip_set_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clip_set_id', sa.Integer(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('clip_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_clip_set_items_caption_id_captions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['clip_id'], ['audio_clips.id'], name=op.f('fk_clip_set_items_clip_id_audio_clips'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['clip_set_id'], ['clip_sets.id'], name=op.f('fk_clip_set_items_clip_set_id_clip_sets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clip_set_items')),
    sa.UniqueConstraint('clip_set_id', 'caption_id', name=op.f('uq_clip_set_items_clip_set_id_caption_id'))
    )
    with op.batch_alter_table('clip_set_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clip_set_items_caption_id'), ['caption_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_clip_set_items_clip_set_id'), ['clip_set_id'], unique=False)

    op.create_table('listening_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('clip_set_id', sa.Integer(), nullable=False),
    sa.Column('clip_id', sa.Integer(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('is_gold', sa.Boolean(), nullable=False),
    sa.Column('gold_kind', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_listening_items_caption_id_captions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['clip_id'], ['audio_clips.id'], name=op.f('fk_listening_items_clip_id_audio_clips'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['clip_set_id'], ['clip_sets.id'], name=op.f('fk_listening_items_clip_set_id_clip_sets'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['session_id'], ['listening_sessions.id'], name=op.f('fk_listening_items_session_id_listening_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listening_items')),
    sa.UniqueConstraint('session_id', 'clip_set_id', 'caption_id', 'is_gold', name=op.f('uq_listening_items_session_id_clip_set_id_caption_id_is_gold'))
    )
    with op.batch_alter_table('listening_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_listening_items_session_id'), ['session_id'], unique=False)

    op.create_table('listening_ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('ovl', sa.Integer(), nullable=True),
    sa.Column('rel', sa.Integer(), nullable=True),
    sa.Column('rated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('skipped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('skip_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('ovl IS NULL OR (ovl >= 1 AND ovl <= 5)', name=op.f('ck_listening_ratings_ovl_range')),
    sa.CheckConstraint('rel IS NULL OR (rel >= 1 AND rel <= 5)', name=op.f('ck_listening_ratings_rel_range')),
    sa.ForeignKeyConstraint(['item_id'], ['listening_items.id'], name=op.f('fk_listening_ratings_item_id_listening_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['listening_sessions.id'], name=op.f('fk_listening_ratings_session_id_listening_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_listening_ratings_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listening_ratings')),
    sa.UniqueConstraint('item_id', 'user_id', name=op.f('uq_listening_ratings_item_id_user_id')),
    sa.UniqueConstraint('session_id', 'user_id', 'position', name=op.f('uq_listening_ratings_session_id_user_id_position'))
    )
    with op.batch_alter_table('listening_ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_listening_ratings_item_id'), ['item_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_listening_ratings_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_listening_ratings_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('listening_ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_listening_ratings_user_id'))
        batch_op.drop_index(batch_op.f('ix_listening_ratings_session_id'))
        batch_op.drop_index(batch_op.f('ix_listening_ratings_item_id'))

    op.drop_table('listening_ratings')
    with op.batch_alter_table('listening_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_listening_items_session_id'))

    op.drop_table('listening_items')
    with op.batch_alter_table('clip_set_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clip_set_items_clip_set_id'))
        batch_op.drop_index(batch_op.f('ix_clip_set_items_caption_id'))

    op.drop_table('clip_set_items')
    with op.batch_alter_table('listening_systems', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_listening_systems_session_id'))

    op.drop_table('listening_systems')
    op.drop_table('listening_sessions')
    op.drop_table('clip_sets')
