"""initial store

Revision ID: 0001
Revises: 
Create Date: 2026-12-01 21:09:32.334133
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('captions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('text_sha', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('split', sa.String(length=32), nullable=False),
    sa.Column('cluster', sa.Integer(), nullable=True),
    sa.Column('temporal', sa.Boolean(), nullable=False),
    sa.Column('audiocap_id', sa.String(length=64), nullable=True),
    sa.Column('youtube_id', sa.String(length=64), nullable=True),
    sa.Column('start_time', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_captions')),
    sa.UniqueConstraint('text_sha', name=op.f('uq_captions_text_sha'))
    )
    with op.batch_alter_table('captions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_captions_temporal'), ['temporal'], unique=False)

    op.create_table('clap_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('checkpoint', sa.String(length=500), nullable=False),
    sa.Column('file_hash', sa.String(length=64), nullable=True),
    sa.Column('backend', sa.String(length=50), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clap_models')),
    sa.UniqueConstraint('name', name=op.f('uq_clap_models_name'))
    )
    op.create_table('exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('preset_name', sa.String(length=200), nullable=False),
    sa.Column('n_pairs', sa.Integer(), nullable=False),
    sa.Column('table_sha256', sa.String(length=64), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports'))
    )
    op.create_table('presets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('alpha1', sa.Float(), nullable=False),
    sa.Column('alpha2', sa.Float(), nullable=False),
    sa.Column('beta1', sa.Float(), nullable=False),
    sa.Column('beta2', sa.Float(), nullable=False),
    sa.Column('delta1_min', sa.Float(), nullable=False),
    sa.Column('delta1_max', sa.Float(), nullable=False),
    sa.Column('delta2_min', sa.Float(), nullable=False),
    sa.Column('delta2_max', sa.Float(), nullable=False),
    sa.Column('model1', sa.String(length=200), nullable=True),
    sa.Column('model2', sa.String(length=200), nullable=True),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_presets')),
    sa.UniqueConstraint('name', name=op.f('uq_presets_name'))
    )
    op.create_table('selection_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('embedding_model', sa.String(length=500), nullable=False),
    sa.Column('clusters', sa.Integer(), nullable=False),
    sa.Column('per_cluster', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('n_candidates', sa.Integer(), nullable=False),
    sa.Column('n_selected', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_selection_runs'))
    )
    op.create_table('perturbation_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=4), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('raw_response', sa.Text(), nullable=False),
    sa.Column('n_parsed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_perturbation_requests_caption_id_captions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_perturbation_requests')),
    sa.UniqueConstraint('caption_id', 'strategy', 'model', name=op.f('uq_perturbation_requests_caption_id_strategy_model'))
    )
    with op.batch_alter_table('perturbation_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_perturbation_requests_caption_id'), ['caption_id'], unique=False)

    op.create_table('scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('clip_sha', sa.String(length=64), nullable=False),
    sa.Column('text_sha', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['clap_models.id'], name=op.f('fk_scores_model_id_clap_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scores')),
    sa.UniqueConstraint('clip_sha', 'text_sha', 'model_id', name=op.f('uq_scores_clip_sha_text_sha_model_id'))
    )
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.create_index('ix_scores_lookup', ['clip_sha', 'model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_scores_model_id'), ['model_id'], unique=False)

    op.create_table('selections',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('cluster', sa.Integer(), nullable=False),
    sa.Column('distance', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_selections_caption_id_captions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['selection_runs.id'], name=op.f('fk_selections_run_id_selection_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'caption_id', name=op.f('pk_selections'))
    )
    op.create_table('perturbations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=4), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_perturbations_caption_id_captions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['request_id'], ['perturbation_requests.id'], name=op.f('fk_perturbations_request_id_perturbation_requests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_perturbations')),
    sa.UniqueConstraint('request_id', 'position', name=op.f('uq_perturbations_request_id_position'))
    )
    with op.batch_alter_table('perturbations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_perturbations_caption_id'), ['caption_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_perturbations_request_id'), ['request_id'], unique=False)

    op.create_table('audio_clips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=False),
    sa.Column('sample_rate', sa.Integer(), nullable=False),
    sa.Column('num_samples', sa.Integer(), nullable=False),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('generator', sa.String(length=100), nullable=False),
    sa.Column('checkpoint_id', sa.String(length=500), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=True),
    sa.Column('guidance', sa.Float(), nullable=True),
    sa.Column('seed', sa.Integer(), nullable=True),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('perturbation_id', sa.Integer(), nullable=True),
    sa.Column('strategy', sa.String(length=4), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_audio_clips_caption_id_captions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['perturbation_id'], ['perturbations.id'], name=op.f('fk_audio_clips_perturbation_id_perturbations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audio_clips')),
    sa.UniqueConstraint('caption_id', 'strategy', 'slot', 'generator', 'checkpoint_id', name=op.f('uq_audio_clips_caption_id_strategy_slot_generator_checkpoint_id'))
    )
    with op.batch_alter_table('audio_clips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audio_clips_caption_id'), ['caption_id'], unique=False)
        batch_op.create_index('ix_audio_clips_caption_strategy', ['caption_id', 'strategy'], unique=False)
        batch_op.create_index(batch_op.f('ix_audio_clips_sha256'), ['sha256'], unique=False)

    op.create_table('pairs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caption_id', sa.Integer(), nullable=False),
    sa.Column('winner_clip_id', sa.Integer(), nullable=False),
    sa.Column('loser_clip_id', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=4), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['caption_id'], ['captions.id'], name=op.f('fk_pairs_caption_id_captions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['loser_clip_id'], ['audio_clips.id'], name=op.f('fk_pairs_loser_clip_id_audio_clips'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['winner_clip_id'], ['audio_clips.id'], name=op.f('fk_pairs_winner_clip_id_audio_clips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pairs')),
    sa.UniqueConstraint('winner_clip_id', 'loser_clip_id', name=op.f('uq_pairs_winner_clip_id_loser_clip_id'))
    )
    with op.batch_alter_table('pairs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pairs_caption_id'), ['caption_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pairs_strategy'), ['strategy'], unique=False)

    op.create_table('pair_scores',
    sa.Column('pair_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('winner_score', sa.Float(), nullable=False),
    sa.Column('loser_score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['clap_models.id'], name=op.f('fk_pair_scores_model_id_clap_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pair_id'], ['pairs.id'], name=op.f('fk_pair_scores_pair_id_pairs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pair_id', 'model_id', name=op.f('pk_pair_scores'))
    )


def downgrade() -> None:
    op.drop_table('pair_scores')
    with op.batch_alter_table('pairs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pairs_strategy'))
        batch_op.drop_index(batch_op.f('ix_pairs_caption_id'))

    op.drop_table('pairs')
    with op.batch_alter_table('audio_clips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audio_clips_sha256'))
        batch_op.drop_index('ix_audio_clips_caption_strategy')
        batch_op.drop_index(batch_op.f('ix_audio_clips_caption_id'))

    op.drop_table('audio_clips')
    with op.batch_alter_table('perturbations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_perturbations_request_id'))
        batch_op.drop_index(batch_op.f('ix_perturbations_caption_id'))

    op.drop_table('perturbations')
    op.drop_table('selections')
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scores_model_id'))
        batch_op.drop_index('ix_scores_lookup')

    op.drop_table('scores')
    with op.batch_alter_table('perturbation_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_perturbation_requests_caption_id'))

    op.drop_table('perturbation_requests')
    op.drop_table('selection_runs')
    op.drop_table('presets')
    op.drop_table('exports')
    op.drop_table('clap_models')
    with op.batch_alter_table('captions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_captions_temporal'))

    op.drop_table('captions')
