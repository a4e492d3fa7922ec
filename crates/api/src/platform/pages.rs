//! Paging of the lists the API answers (issue 19, point 6): a page is at most
//! [`LIST_PAGE_MAX`] items from an offset, with how many the list holds, so that no answer
//! carries a whole list (16,000 accounts in one were 7 MB, and 40 such answers in flight kept
//! 200 MB more memory).

use dtenge_core::{ensure, Result};

/// Largest page of the lists paged by offset here: tokens, holds, voucher programmes, the
/// oracle's providers, VAT payers and VAT payments, the NBK's operations.
pub const LIST_PAGE_MAX: usize = 500;
/// A page of those lists when the caller names no size.
pub const LIST_PAGE_DEFAULT: usize = 50;

/// Refuse a page size out of 1 to [`LIST_PAGE_MAX`], as `MALFORMED_INPUT`.
pub fn check_list_limit(limit: usize) -> Result<()> {
    ensure!((1..=LIST_PAGE_MAX).contains(&limit), MalformedInput, "limit must be 1 to {LIST_PAGE_MAX}");
    Ok(())
}

/// The `limit` items of `items` from the `offset`-th (at most [`LIST_PAGE_MAX`] kept: the rest
/// are only counted), and how many `items` holds. `limit` out of range is `MALFORMED_INPUT`.
pub fn page_of<T>(items: impl Iterator<Item = T>, offset: usize, limit: usize) -> Result<(Vec<T>, usize)> {
    check_list_limit(limit)?;
    let mut page = Vec::with_capacity(limit);
    let mut total: usize = 0;
    for item in items {
        if total >= offset && page.len() < limit {
            page.push(item);
        }
        total += 1;
    }
    assert!(page.len() <= limit);
    Ok((page, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_bounded_and_pages_cover_the_list_once() {
        let items: Vec<usize> = (0..1_234).collect();
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let (page, total) = page_of(items.iter().copied(), offset, LIST_PAGE_MAX).unwrap();
            assert_eq!(total, items.len());
            assert!(page.len() <= LIST_PAGE_MAX);
            if page.is_empty() {
                break;
            }
            offset += page.len();
            seen.extend(page);
        }
        assert_eq!(seen, items);
        assert!(page_of(items.iter(), 0, 0).is_err());
        assert!(page_of(items.iter(), 0, LIST_PAGE_MAX + 1).is_err());
    }
}
