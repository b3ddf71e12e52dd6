import type { Knex } from 'knex';
import * as initial from './20261123000000_initial';
import * as pricing from './20261124100000_pricing';
import * as budgets from './20261124200000_budgets';
import * as apiKeys from './20261124300000_api_keys';
import * as events from './20261124400000_events';
import * as eventRetention from './20261129100000_event_retention';
import * as tokenClasses from './20261201100000_token_classes';
import * as chargesByDayId from './20261201110000_charges_by_day_id';
import * as settingsEpoch from './20261201120000_settings_epoch';
import * as chargesSettledLate from './20261201130000_charges_settled_late';
import * as credits from './20261202100000_credits';
import * as alerts from './20261202200000_alerts';
import * as importedCosts from './20261206213747_imported_costs';
import * as balanceAlerts from './20261206214500_balance_alerts';
import * as tags from './20261206214500_tags';
import * as dimensions from './20261206220000_dimensions';
import * as scopedBudgets from './20261207100000_scoped_budgets';
import * as dimensionValues from './20261207110000_dimension_values';
import * as rollingWindows from './20261207113000_rolling_windows';
import * as dimensionUsageDaily from './20261207120000_dimension_usage_daily';
import * as chargeInOneStatement from './20261207130000_charge_in_one_statement';
import * as hourlyCountersByScope from './20261207140000_hourly_counters_by_scope';
import * as hourTracking from './20261207200000_hour_tracking';

/** Every migration, in order. A list (not a folder scan) so that the bundled server carries them. */
const MIGRATIONS: Record<string, Knex.Migration> = {
  '20261123000000_initial': initial,
  '20261124100000_pricing': pricing,
  '20261124200000_budgets': budgets,
  '20261124300000_api_keys': apiKeys,
  '20261124400000_events': events,
  '20261129100000_event_retention': eventRetention,
  '20261201100000_token_classes': tokenClasses,
  '20261201110000_charges_by_day_id': chargesByDayId,
  '20261201120000_settings_epoch': settingsEpoch,
  '20261201130000_charges_settled_late': chargesSettledLate,
  '20261202100000_credits': credits,
  '20261202200000_alerts': alerts,
  '20261206213747_imported_costs': importedCosts,
  '20261206214500_balance_alerts': balanceAlerts,
  '20261206214500_tags': tags,
  '20261206220000_dimensions': dimensions,
  '20261207100000_scoped_budgets': scopedBudgets,
  '20261207110000_dimension_values': dimensionValues,
  '20261207113000_rolling_windows': rollingWindows,
  '20261207120000_dimension_usage_daily': dimensionUsageDaily,
  '20261207130000_charge_in_one_statement': chargeInOneStatement,
  '20261207140000_hourly_counters_by_scope': hourlyCountersByScope,
  '20261207200000_hour_tracking': hourTracking,
};

export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS).sort(),
  getMigrationName: (name) => name,
  getMigration: async (name) => MIGRATIONS[name],
};
