//! Finding files, kept apart from reading them: `Walk` walks the roots
//! with walkdir and yields one entry per file (and per entry it leaves out
//! or cannot look at). It is a plain iterator, a `Listing`: the pipeline
//! runs it on a thread of its own and batches what it yields.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::{DirEntry, DirEntryExt, WalkDir};

use super::{Entry, Found};
use crate::outcome;

/// A root to walk and how its paths are displayed.
pub struct Root {
    pub path: PathBuf,
    /// `path` relative to the base ("" when it is the base itself).
    pub display: OsString,
}

/// What the walk leaves out, besides what it cannot read.
#[derive(Default)]
pub struct Filter {
    /// `--exclude` globs, matched below each root.
    pub exclude: Exclude,
    /// (device, inode) of this run's own outputs: never indexed.
    pub own: Vec<(u64, u64)>,
}

/// `--exclude` patterns, read as ripgrep and fd read globs: a pattern
/// without `/` matches an entry's name at any depth (`.snapshot`, `*.tmp`);
/// one with `/` matches the path below the root (`scratch/**`; a leading
/// `/` is dropped); a trailing `/` matches directories only. An excluded
/// directory is listed once and not entered.
#[derive(Default)]
pub struct Exclude {
    /// Indexed by `by_path * 2 + dirs_only`.
    sets: [GlobSet; 4],
    empty: bool,
}

impl Exclude {
    pub fn new(patterns: &[String]) -> Result<Exclude, String> {
        let mut builders: [GlobSetBuilder; 4] = std::array::from_fn(|_| GlobSetBuilder::new());
        for pattern in patterns {
            let dirs_only = pattern.len() > 1 && pattern.ends_with('/');
            let p = pattern.trim_end_matches('/');
            let by_path = p.contains('/');
            let p = p.trim_start_matches('/');
            if p.is_empty() {
                return Err(format!("{pattern:?}: an empty pattern"));
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| e.to_string())?;
            builders[usize::from(by_path) * 2 + usize::from(dirs_only)].add(glob);
        }
        let sets = builders.map(|b| b.build());
        let mut out: [GlobSet; 4] = Default::default();
        for (slot, set) in out.iter_mut().zip(sets) {
            *slot = set.map_err(|e| e.to_string())?;
        }
        Ok(Exclude {
            sets: out,
            empty: patterns.is_empty(),
        })
    }

    /// `rel`: the entry's path below its root, never empty (a root itself
    /// is never excluded: the user named it).
    fn matches(&self, rel: &Path, is_dir: bool) -> bool {
        if self.empty {
            return false;
        }
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let [names, names_dirs, paths, paths_dirs] = &self.sets;
        names.is_match(name)
            || paths.is_match(rel)
            || (is_dir && (names_dirs.is_match(name) || paths_dirs.is_match(rel)))
    }
}

/// Temporary files of fastindex's own outputs (`.fastindex-*.part`), which
/// may sit inside the archive being indexed.
pub fn is_own_part_file(name: &[u8]) -> bool {
    name.starts_with(b".fastindex-") && name.ends_with(b".part")
}

/// The entries below the roots, in walkdir's order, root after root.
pub struct Walk {
    roots: std::vec::IntoIter<Root>,
    current: Option<(Root, walkdir::IntoIter)>,
    follow_symlinks: bool,
    filter: Filter,
}

impl Walk {
    pub fn new(roots: Vec<Root>, follow_symlinks: bool, filter: Filter) -> Walk {
        Walk {
            roots: roots.into_iter(),
            current: None,
            follow_symlinks,
            filter,
        }
    }
}

impl Iterator for Walk {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let (root, walk) = match &mut self.current {
                Some(current) => current,
                None => {
                    let root = self.roots.next()?;
                    let walk = WalkDir::new(&root.path)
                        .follow_links(self.follow_symlinks)
                        .follow_root_links(true)
                        .into_iter();
                    self.current.insert((root, walk))
                }
            };
            let Some(item) = walk.next() else {
                self.current = None;
                continue;
            };
            let e = match item {
                Ok(e) => e,
                Err(err) => return Some(failed(root, err)),
            };
            let is_dir = e.file_type().is_dir();
            let excluded = !self.filter.exclude.empty && {
                let rel = e.path().strip_prefix(&root.path).unwrap_or(e.path());
                !rel.as_os_str().is_empty() && self.filter.exclude.matches(rel, is_dir)
            };
            if excluded {
                if is_dir {
                    walk.skip_current_dir();
                }
                let found = Found::Skip(outcome::EXCLUDED.name, "excluded by --exclude".into());
                return Some(entry(root, e, found));
            }
            if let Some(entry) = classify(root, e, &self.filter) {
                return Some(entry);
            }
        }
    }
}

impl Root {
    /// Roots for PATHs as given on a command line, each file once: a PATH
    /// that is, or lies inside, another (links resolved) is walked as part
    /// of that one. Displayed as given ('/'-separated, without `.`
    /// components or repeated and trailing slashes; "" for `.` itself), or
    /// relative to `base` when there is one (`..` where needed).
    pub fn given<P: AsRef<Path>>(paths: &[P], base: Option<&Path>) -> Vec<Root> {
        let base = base.map(absolute);
        let mut kept: Vec<(Root, PathBuf)> = Vec::new();
        for p in paths {
            let path = p.as_ref();
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| absolute(path));
            if kept.iter().any(|(_, r)| real.starts_with(r)) {
                continue;
            }
            kept.retain(|(_, r)| !r.starts_with(&real));
            let display = match &base {
                None => display_given(path.as_os_str()),
                Some(base) => relative(&absolute(path), base),
            };
            kept.push((
                Root {
                    path: path.to_path_buf(),
                    display,
                },
                real,
            ));
        }
        kept.into_iter().map(|(root, _)| root).collect()
    }
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

fn display_given(path: &OsStr) -> OsString {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    if b.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(&components(b).collect::<Vec<_>>().join(&b'/'));
    OsString::from_vec(out)
}

/// The absolute path, `..` resolved by the names alone (links are not
/// looked at), as Python's `os.path.abspath`.
fn absolute(path: &Path) -> PathBuf {
    let joined;
    let path = if path.is_absolute() {
        path
    } else {
        joined = std::env::current_dir().unwrap_or_default().join(path);
        &joined
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in components(path.as_os_str().as_bytes()) {
        if c == b".." {
            parts.pop();
        } else {
            parts.push(c);
        }
    }
    let mut out = Vec::new();
    for c in parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    PathBuf::from(OsString::from_vec(out))
}

/// `path` from `base` (both absolute, normalized), as `os.path.relpath`;
/// "" for the base itself.
fn relative(path: &Path, base: &Path) -> OsString {
    let path: Vec<&[u8]> = components(path.as_os_str().as_bytes()).collect();
    let base: Vec<&[u8]> = components(base.as_os_str().as_bytes()).collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&[u8]> = vec![b".."; base.len() - common];
    parts.extend_from_slice(&path[common..]);
    OsString::from_vec(parts.join(&b'/'))
}

/// The entry for what walkdir found at `e`.
fn entry(root: &Root, e: DirEntry, found: Found) -> Entry {
    Entry {
        display: display_of(root, e.path()),
        path: e.into_path(),
        found,
        object: None,
    }
}

fn display_of(root: &Root, path: &Path) -> OsString {
    // The walk's paths are the root's joined with names: cut its bytes
    // off (Path::strip_prefix, component by component, costs more).
    let bytes = path.as_os_str().as_bytes();
    let rel = match bytes.strip_prefix(root.path.as_os_str().as_bytes()) {
        Some(rest)
            if rest.is_empty()
                || rest[0] == b'/'
                || root.path.as_os_str().as_bytes().ends_with(b"/") =>
        {
            let start = rest.iter().take_while(|&&b| b == b'/').count();
            &rest[start..]
        }
        _ => path
            .strip_prefix(&root.path)
            .unwrap_or(path)
            .as_os_str()
            .as_bytes(),
    };
    let prefix = root.display.as_bytes();
    let joined = match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_vec(),
        (false, true) => prefix.to_vec(),
        (false, false) if prefix.ends_with(b"/") => [prefix, rel].concat(),
        (false, false) => [prefix, b"/", rel].concat(),
    };
    OsString::from_vec(joined)
}

/// An entry the walk reached: None for directories (walked into) and for
/// fastindex's own outputs (not part of the archive).
fn classify(root: &Root, e: DirEntry, filter: &Filter) -> Option<Entry> {
    let mut ft = e.file_type();
    if e.depth() == 0 && ft.is_symlink() {
        // A link named on the command line is followed, as fd and rg do
        // (a link to a directory is walked by walkdir itself).
        match std::fs::metadata(e.path()) {
            Ok(m) => ft = m.file_type(),
            Err(_) => {
                let found = Found::Fail(outcome::UNREADABLE.name, "dangling symbolic link".into());
                return Some(entry(root, e, found));
            }
        }
    }
    if ft.is_dir() {
        return None;
    }
    let found = if ft.is_file() {
        if is_own(&e, filter) {
            return None;
        }
        Found::File
    } else if ft.is_symlink() {
        Found::Skip(
            outcome::SYMLINK.name,
            "symbolic link not followed (see --follow-symlinks)".into(),
        )
    } else {
        Found::Skip(
            outcome::NOT_REGULAR.name,
            "not a regular file (FIFO, socket or device)".into(),
        )
    };
    Some(entry(root, e, found))
}

fn is_own(e: &DirEntry, filter: &Filter) -> bool {
    if is_own_part_file(e.file_name().as_bytes()) {
        return true;
    }
    // The inode comes with the directory entry; only a match costs a stat.
    !filter.own.is_empty()
        && filter.own.iter().any(|&(_, ino)| ino == e.ino())
        && e.metadata()
            .map(|m| filter.own.contains(&(m.dev(), m.ino())))
            .unwrap_or(false)
}

fn failed(root: &Root, err: walkdir::Error) -> Entry {
    let path = err
        .path()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.path.clone());
    let found = if err.loop_ancestor().is_some() {
        Found::Skip(outcome::SYMLINK_LOOP.name, err.to_string())
    } else if path
        .symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
        && !path.exists()
    {
        Found::Fail(outcome::UNREADABLE.name, "dangling symbolic link".into())
    } else {
        Found::Fail(outcome::UNREADABLE.name, err.to_string())
    };
    Entry {
        display: display_of(root, &path),
        path,
        found,
        object: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn displays(paths: &[&str], base: Option<&str>) -> Vec<String> {
        Root::given(paths, base.map(Path::new))
            .into_iter()
            .map(|r| r.display.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn paths_are_displayed_as_given_or_from_the_base() {
        let missing = "/nonexistent-fastindex";
        assert_eq!(displays(&["."], None), [""]);
        assert_eq!(
            displays(&[&format!("{missing}//a/./b/")], None),
            [format!("{missing}/a/b")]
        );
        assert_eq!(displays(&["./x/../y"], None), ["x/../y"]);
        assert_eq!(
            displays(
                &[&format!("{missing}/a/b")],
                Some(&format!("{missing}/a/c/"))
            ),
            ["../b"]
        );
        assert_eq!(
            displays(&[&format!("{missing}/a/c/../b")], Some(missing)),
            ["a/b"]
        );
        assert_eq!(displays(&[missing], Some(missing)), [""]);
    }

    #[test]
    fn a_path_inside_another_is_walked_once() {
        let missing = "/nonexistent-fastindex";
        let inner = format!("{missing}/a/b");
        let outer = format!("{missing}/a");
        assert_eq!(displays(&[&inner, &outer], None), [outer.as_str()]);
        assert_eq!(displays(&[&outer, &inner], None), [outer.as_str()]);
        assert_eq!(displays(&[&outer, &outer], None), [outer]);
    }
}
