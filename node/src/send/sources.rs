//! Sources: the command line expanded into the files to offer, each checked
//! before anything is offered (the command-line paths themselves before
//! anything touches the network: [`Listing::count`]).

use super::*;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::event::{COUNTING_SHOWN_AFTER, CountProgress, Skipped};
use crate::exclude::Exclude;

mod at;

/// The files to offer, and how many paths inside the folders could not be
/// read or have names that cannot be sent (each reported with
/// [`Event::Skipped`]).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Listed {
    pub(crate) sources: Vec<Source>,
    pub(crate) unreadable: usize,
    pub(crate) names: usize,
}

#[cfg(test)]
impl Listed {
    /// The send's result once everything offered (`offered`: the list,
    /// taken out of it) arrived verified: an error when paths were left out
    /// because they could not be read or their names cannot be sent.
    pub(crate) fn verdict(&self, offered: &[Source], sent: Sent) -> Result<Sent> {
        if self.unreadable == 0 && self.names == 0 {
            return Ok(sent);
        }
        Err(Error::Transfer(TransferError::Unreadable {
            sent: offered.iter().filter(|s| !s.is_dir()).count(),
            skipped: self.unreadable,
            names: self.names,
            changed: 0,
            grown: 0,
        }))
    }
}

/// Why a path inside a folder is left out: the reason, and for an
/// unexpected error its text.
#[derive(Debug, PartialEq, Eq)]
struct Why {
    reason: Skip,
    error: Option<String>,
}

impl From<Skip> for Why {
    fn from(reason: Skip) -> Self {
        Why {
            reason,
            error: None,
        }
    }
}

impl From<&std::io::Error> for Why {
    fn from(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Skip::PermissionDenied.into(),
            std::io::ErrorKind::NotFound => Skip::Vanished.into(),
            _ => Why {
                reason: Skip::Unreadable,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Expands the command line into the files to offer, checking each before
/// anything is offered: a file goes under its own name, a folder as
/// every file below it, under `folder/sub/file`, less what `exclude`
/// matches. Inside a folder, symbolic links and partial files are left out
/// by rule, and what cannot be read (a file that cannot be opened, a pipe, a
/// socket, a device, a sub-folder that cannot be listed) is left out too, so
/// that the rest goes: each with an [`Event::Skipped`]. Nothing outside the
/// tree is ever sent because a link pointed there. A path given on the
/// command line is followed, even when it is a link (an explicit choice),
/// and one that cannot be read is an error before anything is sent.
///
/// Every file is kept in memory: [`Listing::count`] is the same walk,
/// keeping only the totals.
#[cfg(test)]
pub(crate) fn sources(
    paths: &[PathBuf],
    stdin_name: &str,
    exclude: &Exclude,
    events: &Events,
) -> Result<Listed> {
    let spec = Spec {
        paths: paths.to_vec(),
        stdin_name: stdin_name.to_owned(),
        rename: None,
        exclude: exclude.clone(),
    };
    check_stdin(&spec)?;
    let mut walk = Walk::new(Arc::new(spec), Pass::Count(events.here()));
    let sources = walk.by_ref().collect::<Result<Vec<_>>>()?;
    Ok(Listed {
        sources,
        unreadable: walk.unreadable,
        names: walk.names,
    })
}

/// What the command line names: the paths, the name standard input goes
/// under (or the one path, `rename`), what to leave out.
#[derive(Debug)]
struct Spec {
    paths: Vec<PathBuf>,
    stdin_name: String,
    rename: Option<String>,
    exclude: Exclude,
}

/// The name standard input goes under when `--name` does not say.
pub(crate) const STDIN_NAME: &str = "stdin";

impl Spec {
    /// `--name` (`name`) names standard input when it is sent, else the one
    /// path given; it must be one usable file name.
    fn new(paths: &[PathBuf], name: Option<&str>, exclude: &Exclude) -> Result<Spec> {
        let stdin = paths.iter().any(|p| p.as_os_str() == STDIN);
        if let Some(name) = name
            && !stdin
            && paths.len() != 1
        {
            return Err(Error::Usage(format!(
                "--name {}: it names standard input (`-`) or the one file or folder sent, \
                 and this send has {} paths (rename them, or send them one by one)",
                escape_for_terminal(name),
                paths.len()
            )));
        }
        let spec = Spec {
            paths: paths.to_vec(),
            stdin_name: name.filter(|_| stdin).unwrap_or(STDIN_NAME).to_owned(),
            rename: name.filter(|_| !stdin).map(str::to_owned),
            exclude: exclude.clone(),
        };
        check_stdin(&spec)?;
        if let Some(rename) = &spec.rename {
            check_flag_name(rename)?;
        }
        Ok(spec)
    }
}

/// `--name`'s value: one usable file name.
fn check_flag_name(name: &str) -> Result<()> {
    validate_wire_path(name)
        .ok()
        .filter(|components| components.len() == 1)
        .map(|_| ())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--name {}: not a usable file name",
                escape_for_terminal(name)
            ))
        })
}

/// Standard input at most once, under a usable name.
fn check_stdin(spec: &Spec) -> Result<()> {
    let stdin_count = spec.paths.iter().filter(|p| p.as_os_str() == STDIN).count();
    if stdin_count > 1 {
        return Err(Error::Usage(
            "standard input (`-`) can be sent only once per send".into(),
        ));
    }
    if stdin_count == 1 {
        check_flag_name(&spec.stdin_name)?;
    }
    Ok(())
}

/// A send's files, counted: the totals for the Manifest, what was left out,
/// and, for a send small enough, the files themselves. A larger one is
/// listed again, lazily, batch by batch ([`Listing::batches`]), so that
/// memory does not grow with the number of files.
#[derive(Debug)]
pub(crate) struct Listing {
    spec: Arc<Spec>,
    /// Entries: files, folders, streams.
    pub(crate) entries: u64,
    /// Folders among them.
    pub(crate) folders: u64,
    /// The sum of their sizes.
    pub(crate) bytes: u64,
    /// Paths left out because they could not be read.
    unreadable: usize,
    /// Paths left out for their names.
    names: usize,
    /// Every source, when there are at most [`KEEP_AT_MOST`].
    kept: Option<Arc<[Source]>>,
    /// Every source of a larger send, packed, when they fit in
    /// [`PACKED_AT_MOST`] bytes (else the batches walk again).
    packed: Option<Arc<Packed>>,
    /// The first batch of a packed send, as the count found it, until the
    /// first [`Listing::batches`] takes it (a later attempt cuts it from the
    /// packed list again).
    first: std::sync::Mutex<Option<Arc<[Source]>>>,
    /// Paths the last [`Listing::batches`] left out because they changed
    /// since the count: appeared (past what the Manifest announced) or gone.
    changed: Arc<AtomicUsize>,
}

/// A send of at most this many entries is kept in memory from the count on
/// (it is one batch).
const KEEP_AT_MOST: usize = BATCH_ENTRIES;

/// A larger send is kept packed (its names end to end, 32 bytes more per
/// entry) while that takes at most this many bytes: about 150,000 entries
/// of the usual name lengths. The batches are then cut from memory instead
/// of walking the folders a second time (a stat per file, the folders read
/// again); past it, memory would grow with the file count, so they walk.
const PACKED_AT_MOST: usize = 8 << 20;

/// Most entries in one batch of a version 4 transfer (the receiver holds
/// one batch's plan at a time).
pub(crate) const BATCH_ENTRIES: usize = 8192;

/// Most path bytes in one batch.
const BATCH_PATH_BYTES: usize = 4 << 20;

/// How many of `list`'s first sources make a batch: at most
/// [`BATCH_ENTRIES`], and [`BATCH_PATH_BYTES`] of paths unless the first
/// alone has more (as [`Batcher::next_batch`] cuts them).
fn first_batch_len(list: &[Source]) -> usize {
    let mut path_bytes = 0;
    for (i, s) in list.iter().take(BATCH_ENTRIES).enumerate() {
        if i > 0 && path_bytes + s.name.len() > BATCH_PATH_BYTES {
            return i;
        }
        path_bytes += s.name.len();
    }
    list.len().min(BATCH_ENTRIES)
}

impl Listing {
    /// Walks the command line once (see the rules of [`Walk`]), reporting
    /// each path left out, and counts what it finds.
    ///
    /// The command-line paths are looked at first, all of them: `checked`
    /// is called once they passed, before any folder is walked (the send
    /// then reaches the receiver while the folders are walked).
    pub(crate) fn count(
        paths: &[PathBuf],
        name: Option<&str>,
        exclude: &Exclude,
        events: &Events,
        checked: impl FnOnce(),
    ) -> Result<Listing> {
        let spec = Arc::new(Spec::new(paths, name, exclude)?);
        Listing::count_keeping(spec, events, PACKED_AT_MOST, checked)
    }

    /// [`Listing::count`] of `spec`, keeping a large send packed in at most
    /// `packed_at_most` bytes.
    fn count_keeping(
        spec: Arc<Spec>,
        events: &Events,
        packed_at_most: usize,
        checked: impl FnOnce(),
    ) -> Result<Listing> {
        Listing::count_shown(spec, events, packed_at_most, COUNTING_SHOWN_AFTER, checked)
    }

    /// [`Listing::count_keeping`], saying how far it got
    /// ([`crate::event::Event::Counting`]) from `shown_after` on.
    fn count_shown(
        spec: Arc<Spec>,
        events: &Events,
        packed_at_most: usize,
        shown_after: std::time::Duration,
        checked: impl FnOnce(),
    ) -> Result<Listing> {
        let mut walk = Walk::new(spec.clone(), Pass::Count(events.here()));
        walk.check_tops()?;
        checked();
        let (mut entries, mut folders, mut bytes) = (0u64, 0u64, 0u64);
        // The first sources as they are, with the command-line path each
        // comes from; past KEEP_AT_MOST, packed; past `packed_at_most`,
        // nothing.
        let mut kept = Some((Vec::new(), Vec::new()));
        let mut packed: Option<Packed> = None;
        let mut first: Option<Arc<[Source]>> = None;
        let mut shown = CountProgress::new(events, shown_after);
        while let Some(source) = walk.next() {
            let source = source?;
            entries += 1;
            folders += u64::from(source.is_dir());
            bytes = bytes.saturating_add(source.size);
            shown.found(entries, bytes);
            // The walk moves to the next command-line path only once this
            // one's folder is done.
            let top = walk.next_path.saturating_sub(1);
            if let Some((list, tops)) = &mut kept {
                if list.len() < KEEP_AT_MOST {
                    list.push(source);
                    tops.push(top);
                    continue;
                }
                let mut p = Packed::default();
                for (s, &t) in list.iter().zip(tops.iter()) {
                    p.push(&spec, t, s);
                }
                packed = Some(p);
                // The first batch stays as it is: it is offered as soon as
                // the receiver is reached, not rebuilt from the packed list.
                let mut list = std::mem::take(list);
                list.truncate(first_batch_len(&list));
                first = Some(list.into());
                kept = None;
            }
            if let Some(p) = &mut packed {
                p.push(&spec, top, &source);
                if p.bytes() > packed_at_most {
                    packed = None;
                }
            }
        }
        shown.finish(entries, bytes);
        if entries > u64::from(u32::MAX) {
            return Err(Error::Usage(format!(
                "{entries} files and folders in one send: at most {} can go at once",
                u32::MAX
            )));
        }
        Ok(Listing {
            spec,
            entries,
            folders,
            bytes,
            unreadable: walk.unreadable,
            names: walk.names,
            kept: kept.map(|(list, _)| list.into()),
            // Of use only with the packed list, whose index it skips.
            first: std::sync::Mutex::new(first.filter(|_| packed.is_some())),
            packed: packed.map(Arc::new),
            changed: Arc::default(),
        })
    }

    /// The one entry of `send --text`.
    pub(crate) fn text(text: &str) -> Listing {
        Listing {
            spec: Arc::new(Spec {
                paths: vec![],
                stdin_name: String::new(),
                rename: None,
                exclude: Exclude::default(),
            }),
            entries: 1,
            folders: 0,
            bytes: text.len() as u64,
            unreadable: 0,
            names: 0,
            kept: Some(vec![Source::text(text)].into()),
            first: std::sync::Mutex::default(),
            packed: None,
            changed: Arc::default(),
        }
    }

    /// Whether its files are listed again for the batches (a large send:
    /// a small one is kept in memory from the count).
    #[cfg(test)]
    pub(crate) fn walks_again(&self) -> bool {
        self.kept.is_none() && self.packed.is_none()
    }

    /// Whether it is a text message.
    pub(crate) fn is_text(&self) -> bool {
        self.kept
            .as_ref()
            .is_some_and(|k| k.first().is_some_and(Source::is_text))
    }

    /// The Manifest of a version 4 transfer.
    pub(crate) fn manifest(&self) -> Manifest {
        Manifest {
            entries: self.entries as u32,
            folders: self.folders as u32,
            bytes: self.bytes,
        }
    }

    /// Every source at once (for a receiver that takes one offer only), at
    /// most `limit` of them, else the usage error that says so (`why`: who
    /// has the limit).
    pub(crate) fn all(&self, limit: usize, why: &str) -> Result<Arc<[Source]>> {
        if self.entries > limit as u64 {
            return Err(Error::Usage(format!(
                "{} files and folders in one send, more than {limit}: {why}",
                self.entries
            )));
        }
        if let Some(kept) = &self.kept {
            return Ok(kept.clone());
        }
        if let Some(packed) = &self.packed {
            return Ok(packed.sources(&self.spec).collect());
        }
        let walk = Walk::new(self.spec.clone(), Pass::Send(None));
        let mut list: Vec<Source> = walk.take(limit).collect::<Result<_>>()?;
        list.shrink_to_fit();
        Ok(list.into())
    }

    /// The sources batch by batch, listed again as they are needed (or
    /// from memory for a small send); `events` hears about what vanished
    /// or appeared since the count (and counts them for [`Listing::verdict`]:
    /// this attempt's, not an earlier one's).
    pub(crate) fn batches(&self, events: &Events) -> Batcher {
        self.changed.store(0, Ordering::Relaxed);
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        let skip = first.as_ref().map_or(0, |f| f.len());
        let iter = match (&self.kept, &self.packed) {
            (Some(kept), _) => Lister::Kept(kept.clone(), 0),
            (None, Some(packed)) => Lister::Packed(packed.clone(), self.spec.clone(), skip),
            (None, None) => Lister::Walk(Box::new(Walk::new(
                self.spec.clone(),
                Pass::Send(Some(events.here())),
            ))),
        };
        Batcher {
            iter,
            first,
            peeked: None,
            events: events.here(),
            grew: 0,
            changed: self.changed.clone(),
        }
    }

    /// The send's result once everything offered arrived verified
    /// (`sent`): an error when paths were left out because they could not
    /// be read, their names cannot be sent, or they changed after the count.
    pub(crate) fn verdict(&self, sent: Sent) -> Result<Sent> {
        let changed = self.changed.load(Ordering::Relaxed);
        if self.unreadable == 0 && self.names == 0 && changed == 0 && sent.grown == 0 {
            return Ok(sent);
        }
        Err(Error::Transfer(TransferError::Unreadable {
            sent: sent.delivered,
            skipped: self.unreadable,
            names: self.names,
            changed,
            grown: sent.grown,
        }))
    }
}

/// Where a batch's sources come from.
enum Lister {
    Kept(Arc<[Source]>, usize),
    /// The packed list, the command line it refers to, the next entry.
    Packed(Arc<Packed>, Arc<Spec>, usize),
    Walk(Box<Walk>),
}

impl Iterator for Lister {
    type Item = Result<Source>;
    fn next(&mut self) -> Option<Result<Source>> {
        match self {
            Lister::Kept(list, next) => {
                let s = list.get(*next).cloned();
                *next += 1;
                s.map(Ok)
            }
            Lister::Packed(packed, spec, next) => {
                let s = packed.source(spec, *next);
                *next += 1;
                s.map(Ok)
            }
            Lister::Walk(walk) => walk.next(),
        }
    }
}

/// A send's sources in little memory: their wire names end to end, and
/// per entry where its name ends, the command-line path it comes from, its
/// size, mode bits and time. A source's path is rebuilt from its
/// command-line path and its name (`top/sub/file` is the path given for
/// `top`, then `sub`, then `file`: names are made of a tree's components
/// one by one, see [`tree_name`]).
#[derive(Debug, Default)]
struct Packed {
    names: String,
    entries: Vec<PackedEntry>,
}

#[derive(Debug)]
struct PackedEntry {
    name_end: u32,
    /// Index in [`Spec::paths`].
    top: u32,
    size: u64,
    /// The time, when it has one (`nanos` < 10^9).
    mtime_secs: i64,
    mtime_nanos: u32,
    attrs: u8,
    /// Inside the command-line path's folder (else it is that path).
    inside: bool,
}

/// `nanos` of a source without a time.
const NO_MTIME: u32 = u32::MAX;

impl Packed {
    fn push(&mut self, spec: &Spec, top: usize, s: &Source) {
        // The command-line path's own source has its very path (bytes
        // compared: a path's components are parsed to compare them).
        let inside = spec
            .paths
            .get(top)
            .is_none_or(|p| p.as_os_str() != s.path.as_os_str());
        self.names.push_str(&s.name);
        let (mtime_secs, mtime_nanos) = s.mtime.map_or((0, NO_MTIME), |m| (m.secs, m.nanos));
        self.entries.push(PackedEntry {
            // At most PACKED_AT_MOST bytes of names.
            name_end: u32::try_from(self.names.len()).unwrap_or(u32::MAX),
            top: u32::try_from(top).unwrap_or(u32::MAX),
            size: s.size,
            mtime_secs,
            mtime_nanos,
            attrs: s.attrs,
            inside,
        });
    }

    /// What it takes, about.
    fn bytes(&self) -> usize {
        self.names.len() + self.entries.len() * std::mem::size_of::<PackedEntry>()
    }

    /// Entry `i`, as the walk gave it.
    fn source(&self, spec: &Spec, i: usize) -> Option<Source> {
        let e = self.entries.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.entries[i - 1].name_end as usize,
        };
        let name = self.names.get(start..e.name_end as usize)?;
        let top = spec.paths.get(e.top as usize)?;
        let mut path = PathBuf::with_capacity(top.as_os_str().len() + name.len());
        path.push(top);
        if e.inside {
            for c in name.split('/').skip(1) {
                path.push(c);
            }
        }
        Some(Source {
            path,
            name: name.to_owned(),
            size: e.size,
            attrs: e.attrs,
            mtime: (e.mtime_nanos != NO_MTIME).then_some(Mtime {
                secs: e.mtime_secs,
                nanos: e.mtime_nanos,
            }),
            text: None,
        })
    }

    fn sources<'a>(&'a self, spec: &'a Spec) -> impl Iterator<Item = Source> + 'a {
        (0..self.entries.len()).map_while(|i| self.source(spec, i))
    }
}

/// Cuts the sources into batches (blocking: it may walk folders).
pub(crate) struct Batcher {
    iter: Lister,
    /// The first batch, when the count kept it (`iter` starts after it).
    first: Option<Arc<[Source]>>,
    peeked: Option<Source>,
    events: Events,
    /// Entries left out past the Manifest ([`Skip::Grew`]).
    grew: usize,
    /// Where the Listing learns of those and of what vanished since the count.
    changed: Arc<AtomicUsize>,
}

impl Batcher {
    /// The next batch, and whether another follows: at most
    /// [`BATCH_ENTRIES`] entries and 4 MiB of paths, within what `batches`
    /// still allows (an entry past the manifest, the tree having grown since
    /// the count, is left out with [`Skip::Grew`]). `None` when nothing is
    /// left. A small send kept in memory is one batch, shared, not copied.
    pub(crate) fn next_batch(
        &mut self,
        batches: &Batches,
    ) -> Result<Option<(Arc<[Source]>, bool)>> {
        if let Lister::Kept(list, next) = &mut self.iter
            && *next == 0
            && list.len() <= BATCH_ENTRIES
        {
            *next = list.len();
            return Ok((!list.is_empty()).then(|| (list.clone(), false)));
        }
        if let Some(first) = self.first.take() {
            let folders = first.iter().filter(|s| s.is_dir()).count() as u64;
            let bytes = first.iter().map(|s| s.size).sum();
            if batches.fits(first.len() as u64, folders, bytes) {
                let more = self.follows(batches, first.len(), folders, bytes)?;
                return Ok(Some((first, more)));
            }
            // Not within the Manifest (of another count): cut from the list.
            if let Lister::Packed(.., next) = &mut self.iter {
                *next = 0;
            }
        }
        let mut batch: Vec<Source> = Vec::new();
        let (mut folders, mut bytes, mut path_bytes) = (0u64, 0u64, 0usize);
        while batch.len() < BATCH_ENTRIES {
            let Some(source) = self.peeked.take().map(Ok).or_else(|| self.iter.next()) else {
                break;
            };
            let source = source?;
            if !batch.is_empty() && path_bytes + source.name.len() > BATCH_PATH_BYTES {
                self.peeked = Some(source);
                break;
            }
            let dir = u64::from(source.is_dir());
            if !batches.fits(batch.len() as u64 + 1, folders + dir, bytes + source.size) {
                self.grew(source);
                continue;
            }
            folders += dir;
            bytes += source.size;
            path_bytes += source.name.len();
            batch.push(source);
        }
        if batch.is_empty() {
            self.note_changed();
            return Ok(None);
        }
        let more = self.follows(batches, batch.len(), folders, bytes)?;
        Ok(Some((batch.into(), more)))
    }

    /// Whether another batch follows one of `n` entries (`folders`,
    /// `bytes`): only if something that still fits is left, since a
    /// BatchEnd promises one. What is left is peeked at.
    fn follows(&mut self, batches: &Batches, n: usize, folders: u64, bytes: u64) -> Result<bool> {
        while self.peeked.is_none() {
            let Some(source) = self.iter.next().transpose()? else {
                break;
            };
            let dir = u64::from(source.is_dir());
            if batches.fits(n as u64 + 1, folders + dir, bytes + source.size) {
                self.peeked = Some(source);
            } else {
                self.grew(source);
            }
        }
        self.note_changed();
        Ok(self.peeked.is_some())
    }

    /// Tells the Listing how many paths changed since the count, so far.
    fn note_changed(&self) {
        let vanished = match &self.iter {
            Lister::Walk(walk) => walk.unreadable,
            _ => 0,
        };
        self.changed.store(self.grew + vanished, Ordering::Relaxed);
    }

    /// Leaves out what appeared (or grew) since the count, and says so.
    fn grew(&mut self, source: Source) {
        self.grew += 1;
        let folder = source.is_dir();
        self.events.emit(Event::Skipped(Skipped {
            path: source.path,
            folder,
            reason: Skip::Grew,
            error: None,
        }));
    }
}

/// Which walk: the count (every path left out is reported and counted), or
/// the one that feeds the batches (files are not opened to check them, and
/// only what vanished since the count is reported).
enum Pass {
    Count(Events),
    Send(Option<Events>),
}

/// The command line's paths walked in order, one source at a time: a
/// folder's files in name order (the folder before what it holds), less
/// what `exclude` matches.
struct Walk {
    spec: Arc<Spec>,
    pass: Pass,
    /// The next command-line path.
    next_path: usize,
    /// The folder being walked: the walk, its root, its name.
    tree: Option<(walkdir::IntoIter, Arc<Path>, Arc<str>)>,
    /// A folder just listed, held back until the walk shows it can be
    /// entered (one that cannot is left out).
    held_dir: Option<Source>,
    /// Ready to go, or being looked at, in order.
    ready: VecDeque<Found>,
    /// The command-line paths' sources not reached yet, once
    /// [`Walk::check_tops`] looked at them all.
    tops: Option<VecDeque<Source>>,
    /// The count's files looked at on a thread of their own (started at
    /// the first file inside a folder).
    looker: Option<Looker>,
    /// The folder of the files looked at here (not by the [`Looker`]).
    folder: at::Folder,
    /// The wire names of the folders on the way to the walk's entry, by
    /// depth (the command-line folder's first).
    folders: Vec<String>,
    unreadable: usize,
    names: usize,
}

/// An entry the walk has found.
enum Found {
    Ready(Source),
    /// A file handed to the [`Looker`]; its result comes back in order.
    Looking,
}

/// Files of the count looked at (stat, and `access` when the mode does not
/// answer: [`at::Folder::file`]) on threads of their own, in batches, while
/// the walk reads the next folders and checks the next names: the count is
/// what a send waits for before it can offer anything, and looking at the
/// files is two thirds of it (10,000 files in one folder: the walk 6 ms,
/// the stats 13 ms on one core), so two threads share them where there are
/// two cores. Results come back in the order the files were handed over.
struct Looker {
    /// One per thread; batch `k` goes to thread `k % threads`.
    requests: Vec<std::sync::mpsc::Sender<Vec<(PathBuf, String)>>>,
    results: Vec<std::sync::mpsc::Receiver<Vec<Looked>>>,
    /// Batches handed over, and their results taken, since the start.
    sent: usize,
    taken: usize,
    /// Files for the next batch.
    filling: Vec<(PathBuf, String)>,
    /// Results not taken yet.
    done: std::collections::VecDeque<Looked>,
    /// [`Found::Looking`] entries in the walk's queue.
    looking: usize,
}

/// A file looked at: its source, or its path and why it is left out.
type Looked = std::result::Result<Source, (PathBuf, Why)>;

/// Files per batch handed to the [`Looker`].
const LOOK_BATCH: usize = 128;
/// Files the walk may be ahead of the results it has taken.
const LOOK_AHEAD: usize = 1024;
/// Threads looking at files, at most (more would wait for the walk).
const LOOKERS: usize = 2;

impl Looker {
    fn start() -> Option<Looker> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(LOOKERS));
        let (mut requests, mut results) = (Vec::new(), Vec::new());
        for _ in 0..threads {
            let (request, incoming) = std::sync::mpsc::channel::<Vec<(PathBuf, String)>>();
            let (report, result) = std::sync::mpsc::channel();
            let started = std::thread::Builder::new()
                .name("count".into())
                .spawn(move || {
                    let mut folder = at::Folder::default();
                    for batch in incoming {
                        let looked: Vec<Looked> = batch
                            .into_iter()
                            .map(|(path, name)| match folder.file(&path, name, true) {
                                Ok(source) => Ok(source),
                                Err(why) => Err((path, why)),
                            })
                            .collect();
                        if report.send(looked).is_err() {
                            break;
                        }
                    }
                });
            if let Err(e) = started {
                tracing::debug!(error = %e, "no thread for the count");
                break;
            }
            requests.push(request);
            results.push(result);
        }
        if requests.is_empty() {
            // The walk looks itself.
            return None;
        }
        Some(Looker {
            requests,
            results,
            sent: 0,
            taken: 0,
            filling: Vec::with_capacity(LOOK_BATCH),
            done: Default::default(),
            looking: 0,
        })
    }

    /// Hands `path` over. Should a thread be gone (only a panic stops
    /// it), its results never come and [`Looker::next`] says so.
    fn look(&mut self, path: PathBuf, name: String) {
        self.filling.push((path, name));
        self.looking += 1;
        if self.filling.len() >= LOOK_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.filling, Vec::with_capacity(LOOK_BATCH));
        let thread = self.sent % self.requests.len();
        // A thread gone leaves its batch's place empty: taking it fails.
        let _ = self.requests[thread].send(batch);
        self.sent += 1;
    }

    /// Whether a result is there without waiting.
    fn has_result(&self) -> bool {
        !self.done.is_empty()
    }

    /// The next result, in order, waiting for it (`None`: a thread
    /// stopped, which only a panic makes it do).
    fn next(&mut self) -> Option<Looked> {
        if self.done.is_empty() {
            if self.taken == self.sent && !self.filling.is_empty() {
                self.send();
            }
            if self.taken == self.sent {
                return None;
            }
            let batch = self.results[self.taken % self.results.len()].recv().ok()?;
            self.taken += 1;
            self.done.extend(batch);
        }
        let looked = self.done.pop_front()?;
        self.looking -= 1;
        Some(looked)
    }
}

impl Walk {
    fn new(spec: Arc<Spec>, pass: Pass) -> Walk {
        Walk {
            spec,
            pass,
            next_path: 0,
            tree: None,
            held_dir: None,
            ready: Default::default(),
            tops: None,
            looker: None,
            folder: at::Folder::default(),
            folders: Vec::new(),
            unreadable: 0,
            names: 0,
        }
    }

    /// Leaves `path` out, and says so.
    fn skip(&mut self, path: &Path, folder: bool, why: Why) {
        let events = match &self.pass {
            Pass::Count(events) => events,
            Pass::Send(Some(events)) if why.reason == Skip::Vanished => events,
            Pass::Send(_) => return,
        };
        if why.reason.is_unreadable() {
            self.unreadable += 1;
        } else if why.reason == Skip::Name {
            self.names += 1;
        }
        events.emit(Event::Skipped(Skipped {
            path: path.to_owned(),
            folder,
            reason: why.reason,
            error: why.error,
        }));
    }

    /// Looks at every command-line path before any folder is walked (the
    /// first one that cannot be sent is the error), so that a walk running
    /// while the receiver is reached finds no mistake on the command line.
    fn check_tops(&mut self) -> Result<()> {
        let tops = self
            .spec
            .paths
            .iter()
            .map(|path| self.top_source(path))
            .collect::<Result<_>>()?;
        self.tops = Some(tops);
        Ok(())
    }

    /// A command-line path: its source (and, for a folder, the walk of
    /// what it holds), as [`Walk::check_tops`] found it if it looked.
    fn top(&mut self, path: &Path) -> Result<Source> {
        let source = match self.tops.as_mut().and_then(VecDeque::pop_front) {
            Some(source) => source,
            None => self.top_source(path)?,
        };
        if source.is_dir() {
            let walk = walkdir::WalkDir::new(path)
                .follow_links(false)
                .min_depth(1)
                .sort_by(by_name)
                .into_iter();
            self.tree = Some((walk, Arc::from(path), Arc::from(source.name.as_str())));
            self.folders = vec![source.name.clone()];
        }
        Ok(source)
    }

    /// A command-line path's source (a folder's, without what it holds).
    fn top_source(&self, path: &Path) -> Result<Source> {
        if path.as_os_str() == STDIN {
            return Ok(Source {
                path: path.to_owned(),
                name: self.spec.stdin_name.clone(),
                size: 0,
                attrs: ATTR_STREAM,
                mtime: None,
                text: None,
            });
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
        // `--name` renames the one path sent.
        let name = match &self.spec.rename {
            Some(name) => name.clone(),
            None => top_name(path)?,
        };
        if meta.is_dir() {
            check_name(path, &name)?;
            // The folder itself, so that it exists even when empty.
            Ok(Source {
                path: path.to_owned(),
                name,
                size: 0,
                attrs: ATTR_DIR,
                mtime: None,
                text: None,
            })
        } else if meta.is_file() {
            source(path, name, &meta)
        } else {
            Err(Error::Usage(format!(
                "{}: not a regular file or folder",
                shown(path)
            )))
        }
    }

    /// One more step of the folder being walked: something ready, or the
    /// folder's end (false).
    fn tree_step(&mut self) -> Result<bool> {
        let Some((walk, root, top)) = &mut self.tree else {
            return Ok(false);
        };
        let Some(entry) = walk.next() else {
            self.tree = None;
            self.ready.extend(self.held_dir.take().map(Found::Ready));
            return Ok(false);
        };
        let (root, top) = (root.clone(), top.clone());
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                self.unlisted(&root, e)?;
                return Ok(true);
            }
        };
        self.ready.extend(self.held_dir.take().map(Found::Ready));
        let path = entry.path();
        let relative = || path.strip_prefix(&root).unwrap_or(path);
        let kind = entry.file_type();
        if !self.spec.exclude.is_empty() && self.spec.exclude.excludes(relative(), kind.is_dir()) {
            if kind.is_dir()
                && let Some((walk, ..)) = &mut self.tree
            {
                walk.skip_current_dir();
            }
            return Ok(true);
        }
        if let Some(reason) = not_content(kind) {
            self.skip(path, false, reason.into());
            return Ok(true);
        }
        // Named after the folder it is in (its name checked already).
        let depth = entry.depth();
        let named = match depth.checked_sub(1).and_then(|d| self.folders.get(d)) {
            Some(parent) => child_name(parent, at::leaf(path)),
            None => tree_name(&top, relative()),
        };
        let name = match named {
            Ok(name) => name,
            Err(why) => {
                if kind.is_dir()
                    && let Some((walk, ..)) = &mut self.tree
                {
                    walk.skip_current_dir();
                }
                self.skip(path, kind.is_dir(), why);
                return Ok(true);
            }
        };
        if kind.is_dir() {
            self.folders.truncate(depth);
            self.folders.push(name.clone());
            self.held_dir = Some(Source {
                path: path.to_owned(),
                name,
                size: 0,
                attrs: ATTR_DIR,
                mtime: None,
                text: None,
            });
        } else if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
            self.skip(path, false, Skip::Partial.into());
        } else {
            if let Pass::Count(_) = self.pass {
                if self.looker.is_none() {
                    self.looker = Looker::start();
                }
                if let Some(looker) = &mut self.looker {
                    looker.look(entry.into_path(), name);
                    self.ready.push_back(Found::Looking);
                    return Ok(true);
                }
            }
            // The count checks that it can be read; a batch only looks.
            let readable = matches!(self.pass, Pass::Count(_));
            let checked = self.folder.file(path, name, readable);
            match checked {
                Ok(source) => self.ready.push_back(Found::Ready(source)),
                Err(why) => self.skip(path, false, why),
            }
        }
        Ok(true)
    }

    /// A folder inside the tree that cannot be listed: left out, with its
    /// entry (held back just before it was opened). The folder named on the
    /// command line itself is an error.
    fn unlisted(&mut self, root: &Path, e: walkdir::Error) -> Result<()> {
        let Some(path) = e.path().map(Path::to_path_buf) else {
            return Err(Error::file(root, e.into()));
        };
        let io = std::io::Error::from(e);
        if path == root {
            return Err(Error::file(root, io));
        }
        if self.held_dir.as_ref().is_some_and(|s| s.path == path) {
            self.held_dir = None;
        }
        self.skip(&path, true, Why::from(&io));
        Ok(())
    }
}

impl Iterator for Walk {
    type Item = Result<Source>;

    fn next(&mut self) -> Option<Result<Source>> {
        loop {
            match self.ready.front() {
                Some(Found::Ready(_)) => {
                    if let Some(Found::Ready(source)) = self.ready.pop_front() {
                        return Some(Ok(source));
                    }
                }
                Some(Found::Looking) => {
                    let looker = self.looker.as_mut()?;
                    // Walk on while the thread looks, up to LOOK_AHEAD.
                    if self.tree.is_some() && !looker.has_result() && looker.looking < LOOK_AHEAD {
                        match self.tree_step() {
                            Ok(_) => continue,
                            Err(e) => {
                                self.tree = None;
                                return Some(Err(e));
                            }
                        }
                    }
                    let Some(looked) = looker.next() else {
                        self.tree = None;
                        self.ready.clear();
                        let path = self.spec.paths.get(self.next_path.saturating_sub(1))?;
                        return Some(Err(Error::file(
                            path,
                            std::io::Error::other("the thread looking at the files stopped"),
                        )));
                    };
                    self.ready.pop_front();
                    match looked {
                        Ok(source) => return Some(Ok(source)),
                        Err((path, why)) => {
                            self.skip(&path, false, why);
                            continue;
                        }
                    }
                }
                None => {}
            }
            match self.tree_step() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.tree = None;
                    return Some(Err(e));
                }
            }
            if !self.ready.is_empty() {
                continue;
            }
            let path = self.spec.paths.get(self.next_path)?.clone();
            self.next_path += 1;
            return Some(self.top(&path));
        }
    }
}

/// The order of a folder's entries: by name, as `sort_by_file_name` has
/// them, without parsing each path's components for every comparison
/// (entries of one folder share their folder's path, so their paths
/// compare as their names do).
fn by_name(a: &walkdir::DirEntry, b: &walkdir::DirEntry) -> std::cmp::Ordering {
    #[cfg(unix)]
    {
        a.path().as_os_str().cmp(b.path().as_os_str())
    }
    #[cfg(not(unix))]
    {
        a.file_name().cmp(b.file_name())
    }
}

/// The name a command-line path is sent under: its last component (of the
/// absolute path for `.` and the like).
fn top_name(path: &Path) -> Result<String> {
    let named = match path.file_name() {
        Some(n) => Some(n.to_owned()),
        None => std::fs::canonicalize(path)
            .map_err(|e| Error::file(path, e))?
            .file_name()
            .map(ToOwned::to_owned),
    };
    let named = named.ok_or_else(|| {
        Error::Usage(format!(
            "{}: has no name to send it under (send the files inside it instead)",
            shown(path)
        ))
    })?;
    named
        .into_string()
        .map_err(|_| Error::Usage(format!("{}: the name is not valid UTF-8", shown(path))))
}

/// A local path as shown on the terminal (escaped: file names are anyone's).
fn shown(path: &Path) -> String {
    escape_for_terminal(&path.display().to_string())
}

/// Whether `name` can go on the wire for `path`.
fn check_name(path: &Path, name: &str) -> Result<()> {
    validate_wire_path(name).map_err(|e| {
        Error::Usage(format!(
            "{}: cannot be sent under this name: {e}",
            shown(path)
        ))
    })?;
    Ok(())
}

/// Whether the file is executable (by anyone): the receiver then makes its
/// copy executable too.
#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Opens `path` to see that it can be read. Without blocking: a pipe put
/// in a file's place after the listing must not hang the send.
fn open_to_check(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    options.open(path)
}

/// One file, checked: readable, and a valid wire path.
fn source(path: &Path, name: String, meta: &std::fs::Metadata) -> Result<Source> {
    open_to_check(path).map_err(|e| Error::file(path, e))?;
    check_name(path, &name)?;
    if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
        return Err(Error::Usage(format!(
            "{}: a partial file of an unfinished transfer (receivers refuse names ending in {})",
            shown(path),
            crate::fsutil::PARTIAL_SUFFIX
        )));
    }
    Ok(file_source(path, name, meta))
}

fn file_source(path: &Path, name: String, meta: &std::fs::Metadata) -> Source {
    Source {
        path: path.to_owned(),
        name,
        size: meta.len(),
        attrs: if executable(meta) { ATTR_EXEC } else { 0 },
        mtime: meta
            .modified()
            .ok()
            .and_then(crate::fsutil::collision::mtime_of),
        text: None,
    }
}

/// Why an entry of this kind has no content to send (`None`: a file or a
/// folder).
fn not_content(kind: std::fs::FileType) -> Option<Skip> {
    if kind.is_file() || kind.is_dir() {
        return None;
    }
    if kind.is_symlink() {
        return Some(Skip::Symlink);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some(Skip::Fifo);
        }
        if kind.is_socket() {
            return Some(Skip::Socket);
        }
        if kind.is_block_device() || kind.is_char_device() {
            return Some(Skip::Device);
        }
    }
    Some(Skip::NotRegular)
}

/// Why a name found in a folder cannot be sent.
fn unsendable(error: String) -> Why {
    Why {
        reason: Skip::Name,
        error: Some(error),
    }
}

/// `parent/leaf`, for the entry `leaf` of the folder sent as `parent` (a
/// name checked already), if it can go on the wire: [`tree_name`] with
/// only the new component to check.
fn child_name(parent: &str, leaf: &std::ffi::OsStr) -> std::result::Result<String, Why> {
    let leaf = leaf
        .to_str()
        .ok_or_else(|| unsendable("it is not valid UTF-8".into()))?;
    localstream_proto::names::check_wire_child(parent, leaf)
        .map_err(|e| unsendable(e.to_string()))?;
    let mut name = String::with_capacity(parent.len() + 1 + leaf.len());
    name.push_str(parent);
    name.push('/');
    name.push_str(leaf);
    Ok(name)
}

/// `top/sub/file` for the path `relative` to the folder sent as `top`, if
/// it can go on the wire.
fn tree_name(top: &str, relative: &Path) -> std::result::Result<String, Why> {
    let mut name = String::with_capacity(top.len() + 1 + relative.as_os_str().len());
    name.push_str(top);
    for c in relative.components() {
        let c = c
            .as_os_str()
            .to_str()
            .ok_or_else(|| unsendable("it is not valid UTF-8".into()))?;
        name.push('/');
        name.push_str(c);
    }
    localstream_proto::names::check_wire_path(&name).map_err(|e| unsendable(e.to_string()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `root/rel` with `content`, its folders made.
    fn put(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn names(listed: &Listed) -> Vec<&str> {
        listed.sources.iter().map(|s| s.name.as_str()).collect()
    }

    /// The skipped events emitted so far: (path relative to `root`, reason).
    fn skipped(rx: &mut crate::event::EventStream, root: &Path) -> Vec<(String, Skip)> {
        std::iter::from_fn(|| rx.try_next())
            .filter_map(|e| match e.event {
                Event::Skipped(s) => Some((
                    s.path.strip_prefix(root).unwrap().display().to_string(),
                    s.reason,
                )),
                _ => None,
            })
            .collect()
    }

    fn sent() -> Sent {
        Sent {
            delivered: 0,
            offered: 0,
            bytes: 0,
            grown: 0,
        }
    }

    #[test]
    fn a_file_gone_since_the_listing_is_left_out_as_vanished() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "top/x.txt", b"x");
        let path = dir.path().join("top/x.txt");
        // Listed (the walk saw it), then removed before it is opened.
        std::fs::remove_file(&path).unwrap();
        let got = at::Folder::default().file(&path, "top/x.txt".into(), true);
        assert_eq!(got, Err(Skip::Vanished.into()));
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_sends_what_it_can_read_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "sub/b.txt", b"bb");
        put(&root, "c.txt.0123abcd.lspart", b"partial");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("sub/pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), root.join("link")).unwrap();
        let events = Events::default();
        let mut rx = events.subscribe();

        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &events,
        )
        .unwrap();
        assert_eq!(
            names(&listed),
            ["top", "top/a.txt", "top/sub", "top/sub/b.txt"]
        );
        assert_eq!(
            listed.unreadable, 1,
            "the pipe; the link and the partial by rule"
        );
        assert_eq!(
            skipped(&mut rx, &root),
            [
                ("c.txt.0123abcd.lspart".to_owned(), Skip::Partial),
                ("link".to_owned(), Skip::Symlink),
                ("sub/pipe".to_owned(), Skip::Fifo),
            ]
        );
        let err = listed.verdict(&listed.sources, sent()).unwrap_err();
        assert_eq!(err.to_string(), "sent 2 files; skipped 1 unreadable");
    }

    #[cfg(unix)]
    #[test]
    fn names_that_cannot_be_sent_are_skipped_inside_a_folder() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "10:30.log", b"colon");
        put(&root, "aux.c", b"reserved on Windows");
        put(&root, "odd:dir/inner.txt", b"inside a folder skipped whole");
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(root.join(latin1), b"not UTF-8").unwrap();
        let events = Events::default();
        let mut rx = events.subscribe();

        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &events,
        )
        .unwrap();
        assert_eq!(names(&listed), ["top", "top/a.txt"]);
        assert_eq!((listed.unreadable, listed.names), (0, 4));
        let got = skipped(&mut rx, &root);
        let reasons: Vec<Skip> = got.iter().map(|(_, r)| *r).collect();
        assert_eq!(reasons, [Skip::Name; 4], "{got:?}");
        let err = listed.verdict(&listed.sources, sent()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sent 1 file; skipped 4 whose names cannot be sent"
        );
    }

    /// The sources of `root` with no exclusion, nobody listening to the events.
    fn listed_plainly(root: &Path) -> Listed {
        sources(
            std::slice::from_ref(&root.to_path_buf()),
            "stdin",
            &Exclude::default(),
            &Events::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_folder_is_walked_in_name_order_each_folder_before_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        // Bytes that sort before and after '/', and a folder whose name is
        // the start of a file's.
        for rel in [
            "b.txt", "b-", "b/inner", "b/a", "a b", "B", "é", "b0/z", "~",
        ] {
            put(&root, rel, rel.as_bytes());
        }
        let listed = listed_plainly(&root);
        assert_eq!(
            names(&listed),
            [
                "top",
                "top/B",
                "top/a b",
                "top/b",
                "top/b/a",
                "top/b/inner",
                "top/b-",
                "top/b.txt",
                "top/b0",
                "top/b0/z",
                "top/~",
                "top/é"
            ]
        );
    }

    #[test]
    fn the_final_line_counts_both_kinds() {
        let listed = Listed {
            sources: vec![],
            unreadable: 2,
            names: 1,
        };
        assert_eq!(
            listed
                .verdict(&listed.sources, sent())
                .unwrap_err()
                .to_string(),
            "sent 0 files; skipped 2 unreadable and 1 whose name cannot be sent"
        );
    }

    #[test]
    fn paths_left_out_by_rule_only_do_not_fail_the_send() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "a.txt.0123abcd.lspart", b"partial");
        let listed = listed_plainly(&root);
        assert_eq!(names(&listed), ["top", "top/a.txt"]);
        assert!(listed.verdict(&listed.sources, sent()).is_ok());
    }

    #[test]
    fn excluded_paths_are_not_offered_and_excluded_folders_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proj");
        for rel in [
            "src/main.rs",
            "src/main.o",
            "target/debug/app",
            "crates/x/target/y",
            ".git/config",
            "build/out.bin",
            "src/build/keep.txt",
            "docs/a.md",
            "docs/deep/b.md",
            "notes.o",
        ] {
            put(&root, rel, rel.as_bytes());
        }
        // Inside an excluded folder: never looked at, so never reported.
        #[cfg(unix)]
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("target/pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let single = dir.path().join("single.o");
        put(dir.path(), "single.o", b"named on the command line");
        let exclude = Exclude::new(&["*.o", "target/", ".git", "/build", "docs/*.md"]).unwrap();
        let events = Events::default();
        let mut rx = events.subscribe();

        let listed = sources(&[root.clone(), single], "stdin", &exclude, &events).unwrap();
        assert_eq!(
            names(&listed),
            [
                "proj",
                "proj/crates",
                "proj/crates/x",
                "proj/docs",
                "proj/docs/deep",
                "proj/docs/deep/b.md",
                "proj/src",
                "proj/src/build",
                "proj/src/build/keep.txt",
                "proj/src/main.rs",
                "single.o",
            ]
        );
        assert!(skipped(&mut rx, &root).is_empty());
        assert!(listed.verdict(&listed.sources, sent()).is_ok());
    }

    /// Permissions stop only a user who is not root (CI runs as root).
    #[cfg(unix)]
    #[test]
    fn unreadable_files_and_folders_inside_are_skipped_but_not_on_the_command_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "secret.txt", b"s");
        put(&root, "private/inner.txt", b"i");
        let closed = std::fs::Permissions::from_mode(0o000);
        std::fs::set_permissions(root.join("secret.txt"), closed.clone()).unwrap();
        std::fs::set_permissions(root.join("private"), closed).unwrap();
        if std::fs::read(root.join("secret.txt")).is_ok() {
            eprintln!("SKIPPED: permissions do not stop this user (root)");
            return;
        }
        let events = Events::default();
        let mut rx = events.subscribe();
        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &events,
        )
        .unwrap();
        assert_eq!(names(&listed), ["top", "top/a.txt"]);
        assert_eq!(listed.unreadable, 2);
        assert_eq!(
            skipped(&mut rx, &root),
            [
                ("private".to_owned(), Skip::PermissionDenied),
                ("secret.txt".to_owned(), Skip::PermissionDenied),
            ]
        );
        // Named on the command line: an error before anything is sent.
        for path in [root.join("secret.txt"), root.join("private")] {
            let err = sources(&[path], "stdin", &Exclude::default(), &events).unwrap_err();
            assert!(matches!(err, Error::File { .. }), "{err:?}");
        }
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(root.join("private"), open).unwrap();
    }

    #[test]
    fn a_long_count_says_how_far_it_got_and_a_quick_one_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        for i in 0..600 {
            put(&root, &format!("d{}/f{i:03}", i % 3), b"xy");
        }
        let events = Events::default();
        let counted = |rx: &mut crate::event::EventStream| -> Vec<(u64, u64, bool)> {
            std::iter::from_fn(|| rx.try_next())
                .filter_map(|e| match e.event {
                    crate::event::Event::Counting {
                        entries,
                        bytes,
                        done,
                    } => Some((entries, bytes, done)),
                    _ => None,
                })
                .collect()
        };
        // Shown at once: from the first entry, and at the end with the totals.
        let mut rx = events.subscribe();
        let listing =
            Listing::count_shown(spec(&[&root]), &events, 0, Duration::ZERO, || {}).unwrap();
        let seen = counted(&mut rx);
        assert_eq!(seen.first(), Some(&(1, 0, false)), "{seen:?}");
        assert_eq!(seen.last(), Some(&(604, 1200, true)), "{seen:?}");
        assert_eq!((listing.entries, listing.bytes), (604, 1200));
        assert!(
            seen[..seen.len() - 1].iter().all(|&(_, _, done)| !done)
                && seen.windows(2).all(|w| w[0].0 <= w[1].0),
            "{seen:?}"
        );
        // Not due within the count: nothing at all, not even the end.
        let mut rx = events.subscribe();
        Listing::count_shown(spec(&[&root]), &events, 0, Duration::from_secs(3600), || {}).unwrap();
        assert_eq!(counted(&mut rx), []);
    }

    #[test]
    fn batches_hold_what_was_counted_and_leave_out_what_appeared_since() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        let n = BATCH_ENTRIES + 10;
        for i in 0..n {
            put(&root, &format!("d{}/f{i:05}", i % 7), b"x");
        }
        let events = Events::default();
        // Walked again for the batches: nothing kept, not even packed.
        let listing = Listing::count_keeping(spec(&[&root]), &events, 0, || {}).unwrap();
        // The folder, 7 sub-folders and the files; too many to keep.
        assert_eq!((listing.entries, listing.folders), (n as u64 + 8, 8));
        assert!(listing.kept.is_none() && listing.packed.is_none());
        // A file appears after the count: the receiver consented to the count.
        put(&root, "d0/zz-late", b"late");
        let mut rx = events.subscribe();
        let mut batcher = listing.batches(&events);
        let mut batches = Batches::new(listing.manifest());
        let mut names = Vec::new();
        let mut mores = Vec::new();
        while let Some((batch, more)) = batcher.next_batch(&batches).unwrap() {
            let entries: Vec<OfferEntry> = batch.iter().map(|s| s.entry(true)).collect();
            batches.admit(&entries).unwrap();
            assert!(batch.len() <= BATCH_ENTRIES);
            names.extend(batch.iter().map(|s| s.name.clone()));
            mores.push(more);
        }
        assert_eq!(mores, [true, false]);
        // Each once, the folder first.
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names[0], "top");
        // Never past the count: the new file (4 bytes, early in the walk)
        // went, and the last files beyond the counted bytes were left out.
        assert!(names.iter().any(|n| n.ends_with("zz-late")));
        assert!(batches.entries() <= listing.entries && batches.bytes() <= listing.bytes);
        let grew: Vec<_> = std::iter::from_fn(|| rx.try_next())
            .filter_map(|e| match e.event {
                Event::Skipped(s) if s.reason == Skip::Grew => Some(s.path),
                _ => None,
            })
            .collect();
        assert_eq!(names.len() + grew.len(), listing.entries as usize + 1);
        // Its 4 bytes take the place of four 1-byte files.
        assert_eq!(grew.len(), 4, "{grew:?}");
        assert!(grew.iter().all(|p| !p.ends_with("zz-late")), "{grew:?}");
        // Everything offered arrived, yet the send did not send them all.
        let files = names.len() - 8;
        let delivered = Sent {
            delivered: files,
            offered: files,
            bytes: 0,
            grown: 0,
        };
        let err = listing.verdict(delivered).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("sent {files} files; skipped 4 that appeared or vanished after the count")
        );
        // Another attempt counts its own.
        let mut again = listing.batches(&events);
        assert!(listing.verdict(sent()).is_ok());
        let mut limits = Batches::new(listing.manifest());
        while let Some((batch, _)) = again.next_batch(&limits).unwrap() {
            let entries: Vec<OfferEntry> = batch.iter().map(|s| s.entry(true)).collect();
            limits.admit(&entries).unwrap();
        }
        assert!(listing.verdict(sent()).is_err());
    }

    /// What the command line `paths` names (standard input as "stdin").
    fn spec(paths: &[&Path]) -> Arc<Spec> {
        Arc::new(Spec {
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            stdin_name: "stdin".into(),
            rename: None,
            exclude: Exclude::default(),
        })
    }

    /// Every batch of `listing`, in order, and whether another followed.
    fn all_batches(listing: &Listing) -> Vec<(Vec<Source>, bool)> {
        let events = Events::default();
        let mut batcher = listing.batches(&events);
        let mut batches = Batches::new(listing.manifest());
        let mut out = Vec::new();
        while let Some((batch, more)) = batcher.next_batch(&batches).unwrap() {
            let entries: Vec<OfferEntry> = batch.iter().map(|s| s.entry(true)).collect();
            batches.admit(&entries).unwrap();
            out.push((batch.to_vec(), more));
        }
        out
    }

    #[test]
    fn a_large_send_kept_packed_gives_what_a_second_walk_would() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, other) = (dir.path().join("tree"), dir.path().join("other"));
        let n = BATCH_ENTRIES + 300;
        for i in 0..n {
            put(
                &tree,
                &format!("a{}/b{}/f{i:05}", i % 3, i % 5),
                &vec![b'x'; i % 17],
            );
        }
        put(&tree, "a0/run.sh", b"#!/bin/sh\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let run = tree.join("a0/run.sh");
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        put(&other, "x/y/z.txt", b"zzz");
        let single = dir.path().join("single.bin");
        std::fs::write(&single, b"one file on its own").unwrap();
        let paths = [tree.as_path(), single.as_path(), other.as_path()];
        let events = Events::default();
        let packed = Listing::count_keeping(spec(&paths), &events, PACKED_AT_MOST, || {}).unwrap();
        let walked = Listing::count_keeping(spec(&paths), &events, 0, || {}).unwrap();
        assert!(packed.packed.is_some() && packed.kept.is_none());
        assert!(!packed.walks_again() && walked.walks_again());
        assert_eq!(packed.manifest(), walked.manifest());
        let (from_memory, from_walk) = (all_batches(&packed), all_batches(&walked));
        assert_eq!(from_memory.len(), 2);
        assert_eq!(from_memory, from_walk);
        // Paths, names, sizes, modes and times as walked, in the same order.
        let sources: Vec<Source> = from_memory.into_iter().flat_map(|(b, _)| b).collect();
        assert_eq!(sources.len() as u64, packed.entries);
        let run = sources.iter().find(|s| s.name == "tree/a0/run.sh").unwrap();
        assert_eq!(run.path, tree.join("a0").join("run.sh"));
        #[cfg(unix)]
        assert_eq!(run.attrs, ATTR_EXEC);
        let one = sources.iter().find(|s| s.name == "single.bin").unwrap();
        assert_eq!((one.path.as_path(), one.size), (single.as_path(), 19));
        let z = sources
            .iter()
            .find(|s| s.name == "other/x/y/z.txt")
            .unwrap();
        assert_eq!(z.path, other.join("x").join("y").join("z.txt"));
        assert!(z.mtime.is_some());
        // An older receiver's one offer: the same list.
        assert_eq!(&*packed.all(usize::MAX, "").unwrap(), &sources[..]);
    }

    #[test]
    fn every_command_line_path_is_checked_before_a_folder_is_walked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path(), root.join("link")).unwrap();
        let missing = dir.path().join("missing.txt");
        let events = Events::default();
        let mut rx = events.subscribe();
        let mut checked = false;
        let err = Listing::count_keeping(spec(&[&root, &missing]), &events, 0, || checked = true)
            .unwrap_err();
        assert!(
            matches!(&err, Error::File { path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(!checked, "the paths did not pass");
        // The folder was not walked: its link was not seen yet.
        assert!(skipped(&mut rx, &root).is_empty());
        let mut checked = false;
        let listing =
            Listing::count_keeping(spec(&[&root]), &events, 0, || checked = true).unwrap();
        assert!(checked);
        assert_eq!(listing.entries, 2);
        #[cfg(unix)]
        assert_eq!(
            skipped(&mut rx, &root),
            [("link".to_owned(), Skip::Symlink)]
        );
    }

    #[test]
    fn the_first_batch_kept_from_the_count_is_cut_as_the_list_would_be() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let n = BATCH_ENTRIES + 5;
        for i in 0..n {
            put(&root, &format!("f{i:05}"), b"xy");
        }
        let events = Events::default();
        let listing =
            Listing::count_keeping(spec(&[&root]), &events, PACKED_AT_MOST, || {}).unwrap();
        let first = listing.first.lock().unwrap().as_ref().map(|f| f.len());
        assert_eq!(first, Some(BATCH_ENTRIES));
        // Within the Manifest: the batch as counted, then the rest.
        let batches = all_batches(&listing);
        assert!(listing.first.lock().unwrap().is_none(), "taken, and let go");
        assert_eq!(
            batches
                .iter()
                .map(|(b, more)| (b.len(), *more))
                .collect::<Vec<_>>(),
            [(BATCH_ENTRIES, true), (n + 1 - BATCH_ENTRIES, false)]
        );
        assert_eq!(batches[0].0[1].name, "t/f00000");
        assert_eq!(batches[1].0[0].name, format!("t/f{:05}", BATCH_ENTRIES - 1));
        // Limits tighter than that batch (another count's Manifest): cut
        // from the list within them, the rest left out as grown.
        let tight = Batches::new(Manifest {
            entries: 10,
            folders: 1,
            bytes: 18,
        });
        let mut batcher = listing.batches(&events);
        let (batch, more) = batcher.next_batch(&tight).unwrap().unwrap();
        let names: Vec<&str> = batch.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 10);
        assert_eq!((names[0], names[9]), ("t", "t/f00008"));
        assert!(!more);
        // Paths of more than a batch's bytes: fewer entries.
        let long = |i: usize| Source {
            path: PathBuf::from("x"),
            name: format!("{i:05}/{}", "n".repeat(4000)),
            size: 0,
            attrs: 0,
            mtime: None,
            text: None,
        };
        let list: Vec<Source> = (0..BATCH_ENTRIES).map(long).collect();
        let fit = BATCH_PATH_BYTES / list[0].name.len();
        assert_eq!(first_batch_len(&list), fit);
        assert_eq!(first_batch_len(&list[..3]), 3);
        assert_eq!(first_batch_len(&[]), 0);
    }

    #[test]
    fn a_send_too_large_to_pack_walks_again() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        for i in 0..BATCH_ENTRIES + 1 {
            put(&tree, &format!("f{i:05}"), b"");
        }
        let events = Events::default();
        // Room for the first batch's worth, not for one more entry.
        let room = BATCH_ENTRIES * (std::mem::size_of::<PackedEntry>() + "tree/f00000".len());
        let listing = Listing::count_keeping(spec(&[&tree]), &events, room, || {}).unwrap();
        assert!(listing.walks_again());
        assert_eq!(
            all_batches(&listing)
                .iter()
                .map(|(b, _)| b.len())
                .sum::<usize>(),
            BATCH_ENTRIES + 2
        );
    }
}
