// Datasets the coordinator serves by name: an uploaded dataset's name carries the sha-256 of its bytes, so
// a volunteer checks what it downloaded against the name before decoding it (server/jobs/datasets.ts).
import { sha256Hex } from "../data/io.ts";

/** An uploaded dataset's name: the sha-256 of its bytes and its kind. */
export const UPLOADED_DATASET = /^([0-9a-f]{64})\.(npz|tar\.gz)$/;

/** Throws unless a downloaded dataset's bytes hash to the sha-256 its name carries (other names pass). */
export async function verifyDataset(name: string, bytes: Uint8Array): Promise<void> {
  const want = UPLOADED_DATASET.exec(name)?.[1];
  if (!want) return;
  const got = await sha256Hex(bytes);
  if (got !== want) throw new Error(`dataset ${name}: its bytes hash to ${got}, not the name's sha-256; refusing it`);
}
