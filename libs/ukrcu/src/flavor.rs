//! The configured flavour (`ukrcu.flavor`), picked at compile time.
//!
//! [`crate::qsbr`] and [`crate::refcount`] each define the same set of
//! types with the same inherent methods: a read section's state
//! (`Section`), a published pointer (`Link<T>`), a reference a writer holds
//! (`Owned<T>`), an object nobody else can reach (`Exclusive<T>`), an
//! unlinked object (`Retired<T>`) and a grace period's readers
//! (`Readers`). The aliases here name the configured flavour's, through a
//! trait implemented for one type per flavour number, so only the chosen
//! flavour's code is instantiated and linked (its marker function
//! `ukrcu_flavor_is_{qsbr,refcount}` is in the image; `cargo xtask test`
//! checks it).

use crate::{qsbr, refcount};
use ukconfig::ukrcu::Flavor;

/// A flavour as a type: `Pick<{ index(flavor) }>`.
pub(crate) struct Pick<const F: u8>;

/// A flavour's types.
pub(crate) trait Select {
    type Section;
    type Link<T>;
    type Owned<T>;
    type Exclusive<T>;
    type Retired<T: Send + 'static>;
    type Readers;
    /// Whether links own a reference to what they point to.
    const LINKS_OWN: bool;
    /// The flavour's name, from its marker function.
    fn name() -> &'static str;
    /// Read sections open here (debug builds).
    fn depth() -> u32;
    /// The flavour's init.
    fn init();
}

impl Select for Pick<0> {
    type Section = qsbr::Section;
    type Link<T> = qsbr::Link<T>;
    type Owned<T> = qsbr::Owned<T>;
    type Exclusive<T> = qsbr::Exclusive<T>;
    type Retired<T: Send + 'static> = qsbr::Retired<T>;
    type Readers = qsbr::Readers;
    const LINKS_OWN: bool = qsbr::LINKS_OWN;
    fn name() -> &'static str {
        qsbr::ukrcu_flavor_is_qsbr()
    }
    fn depth() -> u32 {
        qsbr::depth()
    }
    fn init() {
        qsbr::init();
    }
}

impl Select for Pick<1> {
    type Section = refcount::Section;
    type Link<T> = refcount::Link<T>;
    type Owned<T> = refcount::Owned<T>;
    type Exclusive<T> = refcount::Exclusive<T>;
    type Retired<T: Send + 'static> = refcount::Retired<T>;
    type Readers = refcount::Readers;
    const LINKS_OWN: bool = refcount::LINKS_OWN;
    fn name() -> &'static str {
        refcount::ukrcu_flavor_is_refcount()
    }
    fn depth() -> u32 {
        refcount::depth()
    }
    fn init() {
        refcount::init();
    }
}

/// The selector number of a flavour (explicit, so reordering the choices
/// in Kconfig.toml cannot change the mapping).
pub(crate) const fn index(flavor: Flavor) -> u8 {
    match flavor {
        Flavor::Qsbr => 0,
        Flavor::Refcount => 1,
    }
}

/// The configured flavour.
pub(crate) type Selected = Pick<{ index(ukconfig::ukrcu::FLAVOR) }>;

pub(crate) type Section = <Selected as Select>::Section;
pub(crate) type Link<T> = <Selected as Select>::Link<T>;
pub(crate) type Owned<T> = <Selected as Select>::Owned<T>;
pub(crate) type Retired<T> = <Selected as Select>::Retired<T>;
pub(crate) type Readers = <Selected as Select>::Readers;
pub(crate) const LINKS_OWN: bool = <Selected as Select>::LINKS_OWN;
