//! The unified diff of an edit, from the edit itself: an edit is a list of byte splices over the
//! original text, so the lines it touched are known and nothing needs to be searched for. A
//! general line diff (Myers) costs the file's lines times the changed lines, which is quadratic
//! when every document of a large file changes (a 10 MB `--dry-run` took 38.7 s); this costs the
//! file's size once.
//!
//! The output is what `diff -u` (and the `similar` crate) print: `---`/`+++` headers, hunks with
//! three lines of context, `\ No newline at end of file` after a last line without one.

use std::fmt::Write as _;

use super::yaml::Splice;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// One run of changed lines: old lines `old.0..old.1` became `new_lines`.
struct Region<'a> {
    old: (usize, usize),
    new_lines: Vec<&'a str>,
}

/// The unified diff between `old` and `new`, which is `old` with `splices` applied (sorted by
/// start, not overlapping, as the editors produce them); empty when nothing changed.
pub fn unified(name: &str, old: &str, splices: &[Splice], new: &str) -> String {
    let old_lines = lines(old);
    if old_lines.is_empty() {
        return String::new();
    }
    let starts = line_starts(old);
    let line_of = |byte: usize| {
        starts
            .partition_point(|&s| s <= byte)
            .saturating_sub(1)
            .min(old_lines.len() - 1)
    };
    // The old lines each splice touches, merged where they share or neighbour a line: (first
    // line, last line, splices in it).
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for s in splices {
        let first = line_of(s.start);
        let last = if s.end > s.start {
            line_of(s.end - 1)
        } else {
            first
        };
        match spans.last_mut() {
            Some(prev) if prev.1 + 1 >= first => {
                prev.1 = prev.1.max(last);
                prev.2 += 1;
            }
            _ => spans.push((first, last, 1)),
        }
    }
    // Each span's new text: its old lines with its splices applied, found in `new` by how much
    // the splices before it grew or shrank the text.
    let mut regions: Vec<Region<'_>> = Vec::new();
    let mut shift: isize = 0;
    let mut done = 0;
    for (first, last, n) in spans {
        let (from, to) = (starts[first], line_end(&starts, old.len(), last));
        let new_from = offset(from, shift);
        shift += splices[done..done + n]
            .iter()
            .map(|s| s.with.len() as isize - (s.end - s.start) as isize)
            .sum::<isize>();
        done += n;
        let new_to = offset(to, shift);
        regions.push(trimmed(
            first,
            &old_lines[first..=last],
            lines(&new[new_from..new_to]),
        ));
    }
    regions.retain(|r| r.old.0 != r.old.1 || !r.new_lines.is_empty());
    if regions.is_empty() {
        return String::new();
    }
    let mut out = format!("--- a/{name}\n+++ b/{name}\n");
    let mut i = 0;
    // Where new line numbers stand relative to old ones before region `i`.
    let mut delta: isize = 0;
    while i < regions.len() {
        // A hunk: regions whose context would touch or overlap.
        let mut j = i;
        while j + 1 < regions.len() && regions[j + 1].old.0 <= regions[j].old.1 + 2 * CONTEXT {
            j += 1;
        }
        let start = regions[i].old.0.saturating_sub(CONTEXT);
        let end = (regions[j].old.1 + CONTEXT).min(old_lines.len());
        let mut body = String::new();
        let mut at = start;
        let mut new_len = 0;
        let hunk_delta = delta;
        for r in &regions[i..=j] {
            for l in &old_lines[at..r.old.0] {
                push(&mut body, ' ', l);
                new_len += 1;
            }
            for l in &old_lines[r.old.0..r.old.1] {
                push(&mut body, '-', l);
            }
            for l in &r.new_lines {
                push(&mut body, '+', l);
                new_len += 1;
            }
            delta += r.new_lines.len() as isize - (r.old.1 - r.old.0) as isize;
            at = r.old.1;
        }
        for l in &old_lines[at..end] {
            push(&mut body, ' ', l);
            new_len += 1;
        }
        let new_start = offset(start, hunk_delta);
        let _ = writeln!(
            out,
            "@@ -{} +{} @@",
            range(start, end - start),
            range(new_start, new_len)
        );
        out.push_str(&body);
        i = j + 1;
    }
    out
}

/// `start` (0-based) and `len` as a hunk header writes them: 1-based, the length left out when
/// it is 1, and an empty range at the line before it.
fn range(start: usize, len: usize) -> String {
    match len {
        1 => format!("{}", start + 1),
        0 => format!("{start},0"),
        _ => format!("{},{len}", start + 1),
    }
}

fn push(out: &mut String, sign: char, line: &str) {
    out.push(sign);
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

/// A region with the lines it leaves as they were (at either end) moved out to context.
fn trimmed<'a>(first: usize, old: &[&'a str], mut new: Vec<&'a str>) -> Region<'a> {
    let mut lead = 0;
    while lead < old.len() && lead < new.len() && old[lead] == new[lead] {
        lead += 1;
    }
    let mut tail = 0;
    while tail < old.len() - lead
        && tail < new.len() - lead
        && old[old.len() - 1 - tail] == new[new.len() - 1 - tail]
    {
        tail += 1;
    }
    new.truncate(new.len() - tail);
    new.drain(..lead);
    Region {
        old: (first + lead, first + old.len() - tail),
        new_lines: new,
    }
}

/// The lines of `text`, each with its `\n` (the last one without, if the text does not end
/// with one).
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Byte offset of each line's start.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i < text.len() || i == 0)
        .collect()
}

/// Byte offset just past line `line` (its `\n` included).
fn line_end(starts: &[usize], len: usize, line: usize) -> usize {
    starts.get(line + 1).copied().unwrap_or(len)
}

fn offset(at: usize, shift: isize) -> usize {
    (at as isize + shift).max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(start: usize, end: usize, with: &str) -> Splice {
        Splice {
            start,
            end,
            with: with.into(),
        }
    }

    fn apply(old: &str, splices: &[Splice]) -> String {
        let mut out = String::new();
        let mut at = 0;
        for s in splices {
            out.push_str(&old[at..s.start]);
            out.push_str(&s.with);
            at = s.end;
        }
        out.push_str(&old[at..]);
        out
    }

    fn check(name: &str, old: &str, splices: &[Splice], want: &str) {
        let new = apply(old, splices);
        assert_eq!(unified("f.yaml", old, splices, &new), want, "row {name:?}");
    }

    #[test]
    fn hunks_from_splices() {
        let ten = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        check("nothing", ten, &[], "");
        check(
            "one value",
            ten,
            &[splice(8, 9, "E")],
            "--- a/f.yaml\n+++ b/f.yaml\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n",
        );
        check(
            "near the start and the end",
            ten,
            &[splice(0, 1, "A"), splice(18, 19, "J")],
            "--- a/f.yaml\n+++ b/f.yaml\n@@ -1,4 +1,4 @@\n-a\n+A\n b\n c\n d\n\
             @@ -7,4 +7,4 @@\n g\n h\n i\n-j\n+J\n",
        );
        check(
            "a line inserted keeps its neighbours as context",
            ten,
            &[splice(4, 4, "x\n")],
            "--- a/f.yaml\n+++ b/f.yaml\n@@ -1,5 +1,6 @@\n a\n b\n+x\n c\n d\n e\n",
        );
        check(
            "two values on one line",
            "k: a b\n",
            &[splice(3, 4, "A"), splice(5, 6, "B")],
            "--- a/f.yaml\n+++ b/f.yaml\n@@ -1 +1 @@\n-k: a b\n+k: A B\n",
        );
        check(
            "no newline at the end",
            "a\nb",
            &[splice(2, 3, "B")],
            "--- a/f.yaml\n+++ b/f.yaml\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+B\n\\ No newline at end of file\n",
        );
    }
}
