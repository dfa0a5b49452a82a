//! `pull`, `images`, `image inspect`, `image unpack`, `rmi`, `prune`, `import`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use corral::cli::{
    GlobalArgs, ImageInspectArgs, ImageUnpackArgs, ImagesArgs, ImportArgs, PruneArgs, PullArgs,
    RegistryArgs, RmiArgs,
};
use corral::image::{
    self, import, ops, Digest, Mirror, Platform, Progress, PullPolicy, PullSummary,
    RegistryOptions, Store,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

fn open_store(global: &GlobalArgs) -> anyhow::Result<Store> {
    let dir = global
        .store
        .clone()
        .unwrap_or_else(image::default_store_dir);
    Store::open(&dir).with_context(|| format!("cannot open the store at {}", dir.display()))
}

/// Registry options from the command line (the config file adds to these later).
pub fn registry_options(args: &RegistryArgs) -> anyhow::Result<RegistryOptions> {
    let mut options = RegistryOptions {
        offline: args.source.offline,
        insecure: args.source.insecure_registries.clone(),
        ..RegistryOptions::default()
    };
    for value in &args.source.registry_mirrors {
        options.mirrors.push(Mirror::parse(value)?);
    }
    if let Some(p) = &args.platform {
        options.platform = Some(Platform::parse(p)?);
    }
    Ok(options)
}

pub fn pull(global: &GlobalArgs, args: PullArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let options = registry_options(&args.registry)?;
    let progress = Reporter::new(global.quiet > 0);
    let policy = if options.offline {
        PullPolicy::IfNotPresent
    } else {
        PullPolicy::Always
    };
    let results = image::ensure_all(&store, &args.images, policy, &options, &progress)?;
    progress.finish();
    let mut failed = 0;
    for result in results {
        if let Err(err) = result {
            super::print_error(&anyhow::Error::new(err));
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} images failed", args.images.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn images(global: &GlobalArgs, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let list = ops::list(&store)?;
    if args.json {
        let items: Vec<_> = list
            .iter()
            .map(|(name, e)| serde_json::json!({ "reference": name, "image": e }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<50} {:<14} {:<16} {:>10}  CREATED",
        "REFERENCE", "DIGEST", "PLATFORM", "SIZE"
    );
    for (name, e) in list {
        let platform = e.platform.map(|p| p.to_string()).unwrap_or_default();
        println!(
            "{name:<50} {:<14} {platform:<16} {:>10}  {}",
            e.manifest_digest.short(),
            human_bytes(e.size),
            e.created
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(global: &GlobalArgs, args: ImageInspectArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let info = ops::inspect(&store, &args.image)?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(ExitCode::SUCCESS)
}

pub fn unpack(global: &GlobalArgs, args: ImageUnpackArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let applier = image::default_applier();
    ops::unpack_to(&store, &applier, &args.image, &args.dir)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(global: &GlobalArgs, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let mut failed = 0;
    for name in &args.images {
        match ops::remove(&store, name) {
            Ok(removed) => println!("removed {removed}"),
            Err(err) => {
                super::print_error(&anyhow::Error::new(err));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} images could not be removed",
            args.images.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(global: &GlobalArgs, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let report = ops::prune(&store, &*image::store_applier())?;
    println!(
        "removed {} blobs, {} layer chains, {} temporary files",
        report.blobs, report.chains, report.tmp_entries
    );
    if args.runs {
        let runs = corral::runner::runs::prune(store.root(), &corral::sandbox::default_exe())?;
        println!(
            "removed {} finished runs ({} still running)",
            runs.removed, runs.running
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let progress = Reporter::new(global.quiet > 0);
    let applier = image::store_applier();
    let imported = import::import_path(
        &store,
        &applier,
        &args.path,
        args.name.as_deref(),
        &progress,
    )?;
    progress.finish();
    for img in imported {
        println!("{} {}", img.reference, img.manifest_digest);
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Progress on stderr: bars on a terminal, plain lines otherwise, nothing with -q.
pub struct Reporter {
    quiet: bool,
    bars: Option<MultiProgress>,
    layers: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Reporter {
            quiet,
            bars,
            layers: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Ok(mut layers) = self.layers.lock() {
            for (_, bar) in layers.drain() {
                bar.finish_and_clear();
            }
        }
    }
}

impl Progress for Reporter {
    fn image_started(&self, image: &str) {
        self.line(format!("pulling {image}"));
    }

    fn layer_started(&self, _image: &str, layer: &Digest, size: u64) {
        let Some(bars) = &self.bars else {
            self.line(format!(
                "  {}: downloading {}",
                layer.short(),
                human_bytes(size)
            ));
            return;
        };
        let bar = bars.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(layer.short().to_string());
        if let Ok(mut layers) = self.layers.lock() {
            layers.insert(layer.clone(), bar);
        }
    }

    fn layer_progress(&self, layer: &Digest, done: u64) {
        if let Some(bar) = self.layers.lock().ok().and_then(|l| l.get(layer).cloned()) {
            bar.set_position(done);
        }
    }

    fn layer_downloaded(&self, layer: &Digest) {
        if let Some(bar) = self.layers.lock().ok().and_then(|mut l| l.remove(layer)) {
            bar.finish_and_clear();
        }
        self.line(format!("  {}: downloaded", layer.short()));
    }

    fn layer_cached(&self, _image: &str, layer: &Digest) {
        self.line(format!("  {}: already present", layer.short()));
    }

    fn image_done(&self, s: &PullSummary) {
        if s.up_to_date {
            self.line(format!("{}: up to date ({})", s.image, s.manifest_digest));
            return;
        }
        self.line(format!(
            "{}: {} layers ({} downloaded, {} applied), {} in {:.1}s ({})",
            s.image,
            s.layers,
            s.layers_downloaded,
            s.layers_applied,
            human_bytes(s.bytes_downloaded),
            s.elapsed.as_secs_f64(),
            s.manifest_digest
        ));
    }
}
