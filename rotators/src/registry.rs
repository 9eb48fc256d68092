//! The registry: which rotator serves which secret kind, and which family serves which target
//! kind. The binary fills it in one place (`rotor::builtin_rotators`); test builds add their own.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::family::{Family, TargetKindSpec};
use crate::kind::{SecretKind, SecretType, SubType};
use crate::rotator::Rotator;

/// Maps a secret's type and sub-type to its rotator.
#[derive(Clone, Default)]
pub struct Registry {
    rotators: HashMap<(SecretType, Option<SubType>), Arc<dyn Rotator>>,
    families: Vec<Arc<dyn Family>>,
    /// Kinds whose rotator is a family's (it rotates on that family's targets), not one
    /// registered on its own after it (a test build's).
    by_family: std::collections::HashSet<(SecretType, Option<SubType>)>,
}

impl Registry {
    /// An empty registry: no rotators, no families.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `rotator` for secrets of `kind` (replacing any earlier one).
    pub fn register(&mut self, kind: SecretKind, rotator: Arc<dyn Rotator>) -> &mut Self {
        self.rotators.insert((kind.ty, kind.sub), rotator);
        self.by_family.remove(&(kind.ty, kind.sub));
        self
    }

    /// True when `kind`'s rotator is a family's: its secrets rotate on a target of that family.
    pub fn rotates_on_target(&self, kind: SecretKind) -> bool {
        self.by_family.contains(&(kind.ty, kind.sub))
    }

    /// The rotator for `kind`, if one is registered.
    pub fn get(&self, kind: SecretKind) -> Option<Arc<dyn Rotator>> {
        self.rotators.get(&(kind.ty, kind.sub)).cloned()
    }

    /// Adds a family: its target kinds, options and rotators.
    pub fn add_family(&mut self, family: Arc<dyn Family>) -> &mut Self {
        for (kind, rotator) in family.rotators() {
            self.register(kind, rotator);
            self.by_family.insert((kind.ty, kind.sub));
        }
        self.families.push(family);
        self
    }

    /// The families added, in the order they were added.
    pub fn families(&self) -> &[Arc<dyn Family>] {
        &self.families
    }

    /// The family serving target kind `name` (any of its names), with that kind's spec.
    pub fn target_kind(&self, name: &str) -> Option<(&Arc<dyn Family>, &'static TargetKindSpec)> {
        self.families.iter().find_map(|f| {
            f.target_kinds()
                .iter()
                .find(|k| k.answers_to(name))
                .map(|k| (f, k))
        })
    }

    /// The canonical names of every target kind, for messages.
    pub fn target_kind_names(&self) -> Vec<&'static str> {
        self.families
            .iter()
            .flat_map(|f| f.target_kinds().iter().map(|k| k.name))
            .collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<String> = self
            .rotators
            .keys()
            .map(|(ty, sub)| SecretKind { ty: *ty, sub: *sub }.to_string())
            .collect();
        kinds.sort();
        let families: Vec<&str> = self.families.iter().map(|f| f.name()).collect();
        f.debug_struct("Registry")
            .field("kinds", &kinds)
            .field("families", &families)
            .finish()
    }
}
