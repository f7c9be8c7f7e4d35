// Progress and timing of a detect run's stages: one clock for the pipeline and the volunteer jobs alike.

export interface StageProgress {
  stage: string;
  done: number;
  total: number;
  detail?: string;
}

export type OnStage = (p: StageProgress) => void;

/** Seconds per stage since the previous mark, summed by stage name. */
export function stageClock() {
  const t0 = performance.now();
  let mark = t0;
  const seconds: Record<string, number> = {};
  return {
    seconds,
    stage(name: string): void {
      const now = performance.now();
      seconds[name] = (seconds[name] ?? 0) + (now - mark) / 1000;
      mark = now;
    },
    total: (): number => (performance.now() - t0) / 1000,
  };
}

export type StageClock = ReturnType<typeof stageClock>;
