export * from './money';
export * from './tokens';
export * from './catalog';
export * from './price-table';
export * from './cost';
