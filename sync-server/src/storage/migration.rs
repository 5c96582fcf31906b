//! Which embedded migrations a database still needs, the same rule for both
//! backends: each database records the numbers it has applied (not a count), so
//! migrations may land on main in any order, and a number this binary does not
//! know means a newer binary wrote the database.

use super::StorageError;
use std::collections::BTreeSet;

/// One embedded schema migration. Released files are never edited: a change is a
/// new file with the next free number.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of `known` not yet in `applied`, by ascending number; refuses
/// a database that has applied a number this binary does not know.
pub fn pending<'a>(
    known: &'a [Migration],
    applied: &BTreeSet<u32>,
) -> Result<Vec<&'a Migration>, StorageError> {
    let supported = known.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(&found) = applied
        .iter()
        .rev()
        .find(|v| !known.iter().any(|m| m.version == **v))
    {
        return Err(StorageError::SchemaTooNew { found, supported });
    }
    let mut out: Vec<&Migration> = known
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    out.sort_by_key(|m| m.version);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Migration] = &[
        Migration {
            version: 1,
            name: "init",
            sql: "",
        },
        Migration {
            version: 3,
            name: "control",
            sql: "",
        },
        Migration {
            version: 2,
            name: "access",
            sql: "",
        },
    ];

    fn versions(v: Vec<&Migration>) -> Vec<u32> {
        v.into_iter().map(|m| m.version).collect()
    }

    #[test]
    fn a_fresh_database_gets_every_migration_in_number_order() {
        let todo = pending(KNOWN, &BTreeSet::new()).unwrap();
        assert_eq!(versions(todo), vec![1, 2, 3]);
    }

    #[test]
    fn a_number_that_landed_later_but_is_lower_is_still_applied() {
        let todo = pending(KNOWN, &BTreeSet::from([1, 3])).unwrap();
        assert_eq!(versions(todo), vec![2]);
    }

    #[test]
    fn an_unknown_number_means_a_newer_binary_wrote_the_database() {
        let err = pending(KNOWN, &BTreeSet::from([1, 2, 3, 7])).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::SchemaTooNew {
                    found: 7,
                    supported: 3
                }
            ),
            "{err}"
        );
    }
}
