import type { Knex } from 'knex';
import * as initial from './20261123000000_initial';

/** Every migration, in order. A list (not a folder scan) so that the bundled server carries them. */
const MIGRATIONS: Record<string, Knex.Migration> = {
  '20261123000000_initial': initial,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => MIGRATIONS[name],
};
