/** Latency histograms of the load generator and the stream scenario: microseconds in, milliseconds out. */
import * as hdr from 'hdr-histogram-js';
import type { LoadResult } from './workload';

export type Histogram = ReturnType<typeof hdr.build>;

/** Records microseconds from 1 µs to 60 s with 3 significant digits. */
export const newHistogram = (): Histogram => hdr.build({ useWebAssembly: false, lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });

/** Records a latency given in milliseconds (at least 1 µs). */
export const recordMs = (h: Histogram, elapsedMs: number): void => h.recordValue(Math.max(1, Math.round(elapsedMs * 1000)));

/** p50, p99, p999, max and mean, in milliseconds to the microsecond. */
export function latencyMs(h: Histogram): LoadResult['latencyMs'] {
  const ms = (us: number) => Math.round(us) / 1000;
  return { p50: ms(h.getValueAtPercentile(50)), p99: ms(h.getValueAtPercentile(99)), p999: ms(h.getValueAtPercentile(99.9)), max: ms(h.maxValue), mean: ms(h.mean) };
}
