/** What every benchmark gets from the runner. */
export interface BenchContext {
  /** BENCH_QUICK=1: smaller objects, fewer runs, shorter phases; a smoke check, not a measurement. */
  quick: boolean;
  /** Progress lines (stderr-free: they go to stdout as the run proceeds). */
  log: (message: string) => void;
}
