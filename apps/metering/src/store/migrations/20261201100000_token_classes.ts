import type { Knex } from 'knex';

/**
 * Token classes of issue 13: audio and image input and output tokens (and the
 * cache reads of audio and image input), the service tier of a charge and the
 * provider tool calls inside it, on charges and summed in daily_usage. The
 * checks mirror libs/pricing's nesting rules (nestingProblem), so no row can
 * hold classes that do not nest. Existing rows get 0 / 'standard' / {}.
 */
const CLASSES = ['audio_prompt_tokens', 'cached_audio_prompt_tokens', 'image_prompt_tokens', 'cached_image_prompt_tokens', 'audio_completion_tokens', 'image_completion_tokens'];

const UP = [
  `ALTER TABLE charges
     ${CLASSES.map((c) => `ADD COLUMN ${c} bigint NOT NULL DEFAULT 0 CHECK (${c} >= 0)`).join(',\n     ')},
     ADD COLUMN service_tier text NOT NULL DEFAULT 'standard' CHECK (service_tier IN ('standard', 'batch', 'flex', 'priority')),
     ADD COLUMN tool_calls jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tool_calls) = 'object')`,
  `ALTER TABLE charges ADD CONSTRAINT charges_modalities_nest CHECK (
     cached_audio_prompt_tokens <= audio_prompt_tokens AND
     cached_image_prompt_tokens <= image_prompt_tokens AND
     cached_audio_prompt_tokens + cached_image_prompt_tokens <= cached_prompt_tokens AND
     cached_prompt_tokens + cache_write_tokens + (audio_prompt_tokens - cached_audio_prompt_tokens) + (image_prompt_tokens - cached_image_prompt_tokens) <= prompt_tokens AND
     reasoning_tokens + audio_completion_tokens + image_completion_tokens <= completion_tokens)`,
  `ALTER TABLE daily_usage
     ${CLASSES.map((c) => `ADD COLUMN ${c} bigint NOT NULL DEFAULT 0`).join(',\n     ')}`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE daily_usage ${CLASSES.map((c) => `DROP COLUMN ${c}`).join(', ')}`);
  await knex.raw(`ALTER TABLE charges DROP CONSTRAINT charges_modalities_nest`);
  await knex.raw(`ALTER TABLE charges ${[...CLASSES, 'service_tier', 'tool_calls'].map((c) => `DROP COLUMN ${c}`).join(', ')}`);
}
