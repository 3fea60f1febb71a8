//! `nydusctl image push`: put an image into an OCI registry the way users
//! do, with the distribution API: every data blob of the bootstrap's blob
//! table (skipped when the registry has it), the bootstrap layer, the
//! config, then the manifest. Prints the manifest digest.

mod layout;
mod reference;
mod registry;

use std::io::BufRead;
use std::path::PathBuf;

use nydus_protocol::rafs;

use layout::Descriptor;
use registry::{Credentials, Registry, Source, Tls};

/// The environment variable holding the password when not on stdin.
const PASSWORD_ENV: &str = "NYDUS_REGISTRY_PASSWORD";

#[derive(clap::Args)]
pub struct PushArgs {
    /// The bootstrap file.
    #[arg(long, value_name = "FILE")]
    pub bootstrap: PathBuf,
    /// Directory holding the data blobs, named by blob id (their sha256).
    #[arg(long, value_name = "DIR")]
    pub blob_dir: PathBuf,
    /// Registry user; the password comes from --password-stdin or NYDUS_REGISTRY_PASSWORD.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Use http when the reference has no scheme (default https).
    #[arg(long)]
    pub plain_http: bool,
    /// PEM file of CA certificates to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Do not verify the registry's TLS certificate.
    #[arg(long)]
    pub insecure_skip_verify: bool,
    /// Where to push: [http[s]://]host[:port]/repo[:tag] (tag defaults to latest).
    #[arg(value_name = "REF")]
    pub reference: String,
}

fn credentials(args: &PushArgs) -> Result<Option<Credentials>, String> {
    let Some(user) = args.user.clone() else {
        if args.password_stdin {
            return Err("--password-stdin needs --user".into());
        }
        return Ok(None);
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("--password-stdin: cannot read stdin: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        std::env::var(PASSWORD_ENV).map_err(|_| {
            format!("--user needs a password: pipe it to --password-stdin or set {PASSWORD_ENV}")
        })?
    };
    if password.is_empty() {
        return Err("the registry password is empty".into());
    }
    Ok(Some(Credentials { user, password }))
}

/// A data blob to push: its file and sha256.
struct Blob {
    path: PathBuf,
    hex: String,
    size: u64,
}

/// The bootstrap's blobs, in blob-table order, each checked to hash to its
/// id (the registry addresses blobs by sha256, and nydusd fetches them by
/// id, so a mismatch would make an image that cannot be read).
fn data_blobs(
    args: &PushArgs,
    reader: &dyn rafs::Reader,
    stem: Option<&str>,
) -> Result<Vec<Blob>, String> {
    let mut out: Vec<Blob> = Vec::new();
    for info in reader.blobs() {
        let id = info.effective_id(stem);
        if out.iter().any(|b| b.hex == id) {
            continue;
        }
        let sha = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !sha {
            return Err(format!(
                "{}: blob id {id:?} is not a sha256 digest, so it cannot be named in a registry",
                args.bootstrap.display()
            ));
        }
        let path = args.blob_dir.join(&id);
        if !path.is_file() {
            return Err(format!(
                "{}: blob {id} of the bootstrap is missing; pass the --blob-dir the image was built into",
                path.display()
            ));
        }
        let (hex, size) = layout::sha256_file(&path)?;
        if hex != id {
            return Err(format!(
                "{}: sha256 is {hex}, not the blob id {id}; the blob was changed or misnamed: rebuild the image",
                path.display()
            ));
        }
        out.push(Blob { path, hex, size });
    }
    Ok(out)
}

/// Pushes `source` as `digest` unless the registry already has it.
fn push_blob(reg: &mut Registry, digest: &str, size: u64, source: Source) -> Result<(), String> {
    if reg.has_blob(digest)? {
        eprintln!("exists {digest}");
        return Ok(());
    }
    reg.upload(digest, &source)?;
    eprintln!("pushed {digest} ({size} bytes)");
    Ok(())
}

pub fn run(args: PushArgs) -> Result<(), String> {
    let r = reference::parse(&args.reference, args.plain_http)?;
    let creds = credentials(&args)?;
    let bytes = std::fs::read(&args.bootstrap)
        .map_err(|e| format!("--bootstrap {}: {e}", args.bootstrap.display()))?;
    let image = super::ls::open_image(&args.bootstrap)?;
    let blobs = data_blobs(&args, image.reader.as_ref(), image.stem.as_deref())?;
    let fs_version = match rafs::detect(&bytes) {
        rafs::Detected::V5 => 5,
        _ => 6,
    };

    let (boot_gz, boot_diff) = layout::bootstrap_layer(&bytes)?;
    let mut layers: Vec<Descriptor> = blobs
        .iter()
        .map(|b| Descriptor::blob(&b.hex, b.size))
        .collect();
    let mut diff_ids: Vec<String> = layers.iter().map(|l| l.digest.clone()).collect();
    diff_ids.push(format!("sha256:{boot_diff}"));
    let boot = Descriptor::bootstrap(&boot_gz, fs_version);
    let config = layout::config(&diff_ids);
    let config_desc = Descriptor::config(&config);

    let tls = Tls {
        cacert: args.cacert.clone(),
        skip_verify: args.insecure_skip_verify,
    };
    let mut reg = Registry::new(&r, creds, &tls)?;
    for (b, l) in blobs.iter().zip(&layers) {
        push_blob(&mut reg, &l.digest, b.size, Source::File(b.path.clone()))?;
    }
    push_blob(&mut reg, &boot.digest, boot.size, Source::Bytes(boot_gz))?;
    push_blob(
        &mut reg,
        &config_desc.digest,
        config_desc.size,
        Source::Bytes(config.clone()),
    )?;
    layers.push(boot);
    let manifest = layout::manifest(&config_desc, &layers);
    reg.put_manifest(&r.tag, layout::MANIFEST_TYPE, &manifest)?;
    println!("sha256:{}", layout::sha256_hex(&manifest));
    Ok(())
}
