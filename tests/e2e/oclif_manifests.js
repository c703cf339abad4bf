// Writes oclif.manifest.json for each plugin folder given, as `oclif manifest` does when a
// plugin is packed (tests/e2e/test_anypoint_cli.py says why).
const fs = require("fs");
const path = require("path");
const { Plugin } = require("@oclif/core");

(async () => {
  for (const root of process.argv.slice(2)) {
    const plugin = new Plugin({ root, type: "core", ignoreManifest: true, errorOnManifestCreate: true });
    await plugin.load();
    if (!plugin.valid) throw new Error(`${root} is not an oclif plugin`);
    fs.writeFileSync(path.join(root, "oclif.manifest.json"), JSON.stringify(plugin.manifest));
  }
})().catch((e) => { console.error(e); process.exit(1); });
