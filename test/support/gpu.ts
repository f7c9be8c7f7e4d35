// The test runtime: a real adapter (Dawn+SwiftShader in Node, llvmpipe/lavapipe in Deno), outputs poisoned.
import { getRuntime, type Runtime } from "../../src/gpu/runtime.ts";
import "../../kernels/index.ts"; // the user variants (kernels/variants.ts) registered beside each op

let announced = false;
export async function testRuntime(): Promise<Runtime> {
  const rt = await getRuntime();
  rt.poisonOutputs = true;
  if (!announced) {
    announced = true;
    console.log(`[adapter] ${rt.adapterName}`);
  }
  return rt;
}
