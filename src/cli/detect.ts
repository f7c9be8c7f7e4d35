// npm run detect [-- --attack badnets|blended|sig|wanet|label-consistent|none --rate 0.05 --train 4000
//                  --models 2 --epochs 4 --lr 0.05 --batch 64 --augment --k 256 --projection factored|dense --budget
// auto|N --seed 0
//                  --data PATH --out report --cache .cache/detect --retrain-baselines
//                  --attribution trak|datamodels --dm-models N --dm-alpha 0.5 --dm-penalty l2|l1 --lds-models S]
// With no arguments: the embedded default (CIFAR-10 subset, small CNN, BadNets at 5%), sized for a CPU.
import { parseArgs } from "node:util";
import { getRuntime } from "../gpu/runtime.ts";
import { type DetectConfig, DetectConfig as Schema } from "../detect/config.ts";
import { runDetect } from "../detect/pipeline.ts";
import { writeReport } from "../detect/report.ts";
import { progressBar } from "./progress.ts";
import { args, exit } from "../platform.ts";

const { values: a } = parseArgs({
  args: args(),
  options: {
    attack: { type: "string" },
    rate: { type: "string" },
    target: { type: "string" },
    train: { type: "string" },
    models: { type: "string" },
    epochs: { type: "string" },
    lr: { type: "string" },
    batch: { type: "string" },
    augment: { type: "boolean" },
    k: { type: "string" },
    projection: { type: "string" },
    restarts: { type: "string" },
    budget: { type: "string" },
    seed: { type: "string" },
    data: { type: "string" },
    out: { type: "string" },
    cache: { type: "string" },
    "search-backend": { type: "string" },
    "retrain-baselines": { type: "boolean" },
    attribution: { type: "string" },
    "dm-models": { type: "string" },
    "dm-alpha": { type: "string" },
    "dm-penalty": { type: "string" },
    "lds-models": { type: "string" },
  },
});

const int = (name: string, v: string | undefined) => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isInteger(x)) throw new Error(`--${name} must be an integer, got "${v}"`);
  return x;
};
const defaults = Schema.parse({});
const config: DetectConfig = {
  ...(a.data && { data: a.data }),
  ...(a.out && { out: a.out }),
  ...(a.cache && { cache: a.cache }),
  ...(a.attack && { attack: a.attack as DetectConfig["attack"] }),
  attackConfig: {
    ...defaults.attackConfig,
    ...(a.rate && { rate: Number(a.rate) }),
    ...(a.target && { targetClass: int("target", a.target) }),
  },
  ...(a.train && { train: int("train", a.train) }),
  ...(a.models && { models: int("models", a.models) }),
  ...(a.k && { k: int("k", a.k) }),
  ...(a.projection && { projection: a.projection as "dense" | "factored" }),
  ...(a.restarts && { restarts: int("restarts", a.restarts) }),
  ...(a.budget && { budget: a.budget === "auto" ? "auto" : int("budget", a.budget) }),
  ...(a.seed && { seed: int("seed", a.seed) }),
  ...(a["search-backend"] && { searchBackend: a["search-backend"] as "auto" | "dense" | "factors" }),
  ...(a["retrain-baselines"] && { retrainBaselines: true }),
  ...(a.attribution && { attribution: a.attribution as "trak" | "datamodels" }),
  ...(a["dm-models"] && { dmModels: int("dm-models", a["dm-models"]) }),
  ...(a["dm-alpha"] && { dmAlpha: Number(a["dm-alpha"]) }),
  ...(a["dm-penalty"] && { dmPenalty: a["dm-penalty"] as "l2" | "l1" }),
  ...(a["lds-models"] && { ldsModels: int("lds-models", a["lds-models"]) }),
  recipe: {
    ...defaults.recipe,
    ...(a.epochs && { epochs: Number(a.epochs) }),
    ...(a.lr && { lr: Number(a.lr) }),
    ...(a.batch && { batchSize: int("batch", a.batch) }),
    ...(a.augment && { cropPad: 4, flip: true }),
  },
};
const parsed = Schema.safeParse(config);
if (!parsed.success) {
  console.error(
    `detect: bad settings:\n${parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n")}`,
  );
  exit(2);
}

const rt = await getRuntime();
console.error(`adapter: ${rt.adapterName}`);
let last = "";
const result = await runDetect(rt, config, (p) => {
  if (p.stage !== last && last) console.error("");
  last = p.stage;
  progressBar(p.stage.padEnd(28), p.done, p.total, p.detail ?? "");
});
const files = await writeReport(result, parsed.data!.out);
const s = result.summary;
console.log(JSON.stringify(
  {
    attribution: s.config.attribution,
    auroc: s.auroc,
    lds: s.lds,
    precision_at_budget: s.precision_at_budget,
    recall_at_budget: s.recall_at_budget,
    flagged: s.flagged.length,
    asr_before: s.asr_before,
    asr_after: s.asr_after,
    clean_acc_before: s.clean_acc_before,
    clean_acc_after: s.clean_acc_after,
    seconds: Math.round(s.seconds),
    baselines: Object.fromEntries(Object.entries(s.baselines).map(([k, b]) => [k, { auroc: b.auroc }])),
    report: files.html,
  },
  null,
  1,
));
