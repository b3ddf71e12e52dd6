export * from './errors';
export * from './validation';
export * from './charge';
export * from './usage';
export * from './limits';
export * from './markup';
export * from './pricing';
