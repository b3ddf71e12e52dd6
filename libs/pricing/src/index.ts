export * from './money';
export * from './tokens';
export * from './rates';
export * from './catalog';
export * from './price-table';
export * from './cost';
export * from './usage-shapes';
