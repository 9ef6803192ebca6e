//! Turning command-line input into the API's message model: either a JSON
//! file (exactly the body of `POST /v1/messages`) or composing flags.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use herald_message::{AttachmentRequest, MessageRequest};

use crate::exit::Failure;

/// Where the message comes from.
#[derive(Debug, Args)]
pub(crate) struct ComposeArgs {
    /// Read the message from a JSON file in the API's format (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "from", "to", "cc", "bcc", "reply_to", "subject", "text", "text_file",
        "html_file", "attach", "inline", "header", "tag",
    ])]
    json: Option<PathBuf>,
    /// The author, `addr` or `Name <addr>`.
    #[arg(long)]
    from: Option<String>,
    /// A recipient (repeat for more).
    #[arg(long)]
    to: Vec<String>,
    /// A copied recipient (repeat for more).
    #[arg(long)]
    cc: Vec<String>,
    /// A blind-copied recipient (repeat for more).
    #[arg(long)]
    bcc: Vec<String>,
    /// Where replies go.
    #[arg(long)]
    reply_to: Option<String>,
    /// The subject line.
    #[arg(long)]
    subject: Option<String>,
    /// The plain-text body.
    #[arg(long, conflicts_with = "text_file")]
    text: Option<String>,
    /// Read the plain-text body from a file (UTF-8).
    #[arg(long, value_name = "PATH")]
    text_file: Option<PathBuf>,
    /// Read the HTML body from a file (UTF-8).
    #[arg(long, value_name = "PATH")]
    html_file: Option<PathBuf>,
    /// Attach a file (repeat for more); its type is guessed from its name.
    #[arg(long, value_name = "PATH")]
    attach: Vec<PathBuf>,
    /// Embed a file for the HTML to show as `cid:CID` (repeat for more).
    #[arg(long, value_name = "PATH=CID")]
    inline: Vec<String>,
    /// Add a header, `Name: value` (repeat for more).
    #[arg(long, value_name = "'Name: value'")]
    header: Vec<String>,
    /// Tag the message (repeat for more).
    #[arg(long)]
    tag: Vec<String>,
}

impl ComposeArgs {
    /// Builds the request. File and flag syntax problems are input errors
    /// naming the flag; field validation happens later, on the request.
    pub(crate) fn request(self) -> Result<MessageRequest, Failure> {
        if let Some(path) = &self.json {
            let raw = read_file("--json", path)?;
            return serde_json::from_slice(&raw)
                .map_err(|e| Failure::input(format!("--json: {}: {e}", path.display())));
        }
        let text = match (&self.text, &self.text_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(read_utf8("--text-file", path)?),
            (None, None) => None,
        };
        let html = self
            .html_file
            .as_deref()
            .map(|p| read_utf8("--html-file", p))
            .transpose()?;

        let mut attachments = Vec::new();
        for path in &self.attach {
            attachments.push(AttachmentRequest {
                filename: Some(file_name("--attach", path)?),
                content: STANDARD.encode(read_file("--attach", path)?),
                ..Default::default()
            });
        }
        for spec in &self.inline {
            let (path, cid) = spec.rsplit_once('=').ok_or_else(|| {
                Failure::input(format!("--inline: expected PATH=CID, got {spec:?}"))
            })?;
            let path = Path::new(path);
            attachments.push(AttachmentRequest {
                filename: Some(file_name("--inline", path)?),
                content: STANDARD.encode(read_file("--inline", path)?),
                inline: true,
                content_id: Some(cid.to_owned()),
                ..Default::default()
            });
        }

        let mut headers = std::collections::BTreeMap::new();
        for raw in &self.header {
            let (name, value) = raw.split_once(':').ok_or_else(|| {
                Failure::input(format!("--header: expected 'Name: value', got {raw:?}"))
            })?;
            let value = value.strip_prefix(' ').unwrap_or(value);
            if headers.insert(name.to_owned(), value.to_owned()).is_some() {
                return Err(Failure::input(format!("--header: {name} given twice")));
            }
        }

        Ok(MessageRequest {
            from: self.from,
            to: self.to,
            cc: self.cc,
            bcc: self.bcc,
            reply_to: self.reply_to,
            subject: self.subject,
            text,
            html,
            attachments,
            headers,
            tags: self.tag,
            ..Default::default()
        })
    }
}

fn read_file(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    let result = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    result.map_err(|e| Failure::input(format!("{flag}: cannot read {}: {e}", path.display())))
}

fn read_utf8(flag: &str, path: &Path) -> Result<String, Failure> {
    String::from_utf8(read_file(flag, path)?)
        .map_err(|_| Failure::input(format!("{flag}: {} is not UTF-8 text", path.display())))
}

fn file_name(flag: &str, path: &Path) -> Result<String, Failure> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Failure::input(format!("{flag}: {} has no UTF-8 file name", path.display())))
}
