//! Compose service keys of Docker's run vocabulary: `hostname`,
//! `dns_search`, `dns_opt`, `extra_hosts` and `links` (translated to the
//! scenario keys of the same meaning, docker-semantics DNS-2, DNS-20, BR-20).

use super::yaml::{Entry, Node, Val};
use super::{ComposeError, Ctx, Origin, q, q_list};

/// A scenario `[[container]]` key and its TOML value, with its origin.
pub(crate) type Extra = (String, String, Origin);

/// One string or a list of strings.
fn strings(ctx: &Ctx, n: &Node, key: &str) -> Result<Vec<String>, ComposeError> {
    match &n.val {
        Val::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, it)| ctx.text(it, &format!("{key}[{i}]")))
            .collect(),
        _ => Ok(vec![ctx.text(n, key)?]),
    }
}

/// Reads one of the keys into `out`; false when `f` is not one of them.
pub(crate) fn read(
    ctx: &Ctx,
    f: &Entry,
    key: &str,
    out: &mut Vec<Extra>,
    links: &mut Vec<(String, String, Origin)>,
) -> Result<bool, ComposeError> {
    let at = Origin::new(f.line, f.col, key.to_string());
    match f.key.as_str() {
        "hostname" => out.push(("hostname".into(), q(&ctx.text(&f.value, key)?), at)),
        "dns_search" => out.push((
            "dns_search".into(),
            q_list(&strings(ctx, &f.value, key)?),
            at,
        )),
        "dns_opt" => out.push(("dns_opt".into(), q_list(&strings(ctx, &f.value, key)?), at)),
        "extra_hosts" => {
            let v = match &f.value.val {
                // `{ host: ip }`
                Val::Map(m) => m
                    .iter()
                    .map(|e| Ok(format!("{}:{}", e.key, ctx.text(&e.value, key)?)))
                    .collect::<Result<Vec<_>, ComposeError>>()?,
                // `host:ip` or `host=ip`
                _ => strings(ctx, &f.value, key)?
                    .into_iter()
                    .map(|s| match s.split_once('=') {
                        Some((h, ip)) => format!("{h}:{ip}"),
                        None => s,
                    })
                    .collect(),
            };
            out.push(("extra_hosts".into(), q_list(&v), at));
        }
        "links" => {
            for (i, s) in strings(ctx, &f.value, key)?.into_iter().enumerate() {
                let (svc, alias) = match s.split_once(':') {
                    Some((a, b)) => (a.to_string(), b.to_string()),
                    None => (s.clone(), s.clone()),
                };
                links.push((
                    svc,
                    alias,
                    Origin::new(f.line, f.col, format!("{key}[{i}]")),
                ));
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}
