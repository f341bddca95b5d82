//! The two replicas: [`Side`], and arrays of one value per side indexed by
//! it (`[T; 2]` with `arr[side]`), shared by the engine, the runner, the
//! links and the options without importing the engine.

use std::fmt;
use std::ops::{Index, IndexMut};

/// One of the two replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The local side, where the brain runs.
    Left,
    /// The other side.
    Right,
}

impl Side {
    /// Both sides, left first.
    pub const BOTH: [Side; 2] = [Side::Left, Side::Right];

    /// The other side.
    #[must_use]
    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }

    /// 0 for left, 1 for right.
    #[must_use]
    pub fn idx(self) -> usize {
        self as usize
    }

    /// `L` or `R`.
    #[must_use]
    pub fn letter(self) -> char {
        match self {
            Side::Left => 'L',
            Side::Right => 'R',
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Left => "left",
            Side::Right => "right",
        })
    }
}

impl<T> Index<Side> for [T; 2] {
    type Output = T;

    fn index(&self, side: Side) -> &T {
        &self[side.idx()]
    }
}

impl<T> IndexMut<Side> for [T; 2] {
    fn index_mut(&mut self, side: Side) -> &mut T {
        &mut self[side.idx()]
    }
}

#[cfg(test)]
mod tests {
    use super::Side;

    #[test]
    fn an_array_per_side_is_indexed_by_side() {
        let mut a = [1, 2];
        assert_eq!(a[Side::Left], 1);
        assert_eq!(a[Side::Right], 2);
        a[Side::Right.other()] = 7;
        assert_eq!(a, [7, 2]);
    }
}
