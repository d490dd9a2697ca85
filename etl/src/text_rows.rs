//! Many rows of a few optional strings each, held in one block of text.
//!
//! A million customers' or key sets' ids, emails and phones held as owned
//! strings cost a 16-byte pointer and an allocation (rounded up to its size
//! class) apiece; here they cost their bytes plus 8 + 4 per string a row,
//! and no allocation of their own.

/// Rows of `N` optional strings each, in the order pushed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TextRows<const N: usize> {
    text: String,
    /// Where each row's text starts.
    starts: Vec<u64>,
    /// Each row's strings' lengths ([`ABSENT`] for none).
    lens: Vec<[u32; N]>,
}

/// The length of an absent string.
const ABSENT: u32 = u32::MAX;

impl<const N: usize> TextRows<N> {
    /// Room for `rows` more rows.
    pub fn reserve(&mut self, rows: usize) {
        self.starts.reserve_exact(rows);
        self.lens.reserve_exact(rows);
    }

    /// Adds a row; returns its index. A string of 4 GiB or more is kept as
    /// its first 4 GiB less one byte (no key comes near).
    pub fn push(&mut self, values: [Option<&str>; N]) -> usize {
        self.starts.push(self.text.len() as u64);
        self.lens.push(values.map(|v| match v {
            None => ABSENT,
            Some(v) => {
                let mut end = v.len().min(ABSENT as usize - 1);
                while !v.is_char_boundary(end) {
                    end -= 1;
                }
                self.text.push_str(&v[..end]);
                end as u32
            }
        }));
        self.starts.len() - 1
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Row `i`'s strings.
    pub fn get(&self, i: usize) -> [Option<&str>; N] {
        let mut at = self.starts[i] as usize;
        self.lens[i].map(|len| {
            (len != ABSENT).then(|| {
                let v = &self.text[at..at + len as usize];
                at += len as usize;
                v
            })
        })
    }

    /// Every row's strings, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = [Option<&str>; N]> + Clone + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_back_what_was_pushed_absent_and_empty_apart() {
        let mut rows = TextRows::<3>::default();
        let pushed = [
            [Some("C1"), None, Some("+331")],
            [None, None, None],
            [Some(""), Some("zoë@exämple.com"), None],
        ];
        for (i, r) in pushed.iter().enumerate() {
            assert_eq!(rows.push(*r), i);
        }
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.iter().collect::<Vec<_>>(), pushed);
        assert_eq!(rows.get(2)[1], Some("zoë@exämple.com"));
    }
}
