// The job kinds the coordinator registers (src/protocol/job-kind.ts): name -> kind.
import type { JobKind, JobKindRegistry } from "../../src/protocol/job-kind.ts";
import { datamodels } from "./datamodels.ts";
import { trak } from "./trak.ts";

export const JOB_KINDS: JobKindRegistry = new Map<string, JobKind<unknown>>([[trak.name, trak], [
  datamodels.name,
  datamodels,
]]);
export { datasetRoutes, DiskDatasets, SqlDatasets, useDatasets } from "./datasets.ts";
