//! One table per wire enum (rustls' `enum_builder!` is the model): each variant, its wire
//! number and its name are written once, and the enum, the number ↔ variant conversions,
//! the list of every variant and the names are generated from that table, so they cannot
//! drift apart.

/// Declares a `#[repr(u8)]` enum from a table of `Variant = number => "NAME"` rows and
/// generates:
///
/// * `ALL`: every variant, in table order;
/// * `code(self) -> u8` (also `u8::from(v)` and `v as u8`);
/// * `from_code(u8) -> Option<Self>` (also `Self::try_from(u8)`, whose error is the
///   unknown number): a number outside the table is `None`, and each caller decides what
///   an unknown number means on the wire;
/// * `name(self) -> &'static str`: the row's name.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $code:literal => $text:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant = $code,
            )+
        }

        impl $name {
            /// Every variant, in the order of the table.
            pub const ALL: [$name; [$($code),+].len()] = [$($name::$variant),+];

            /// The wire number.
            #[inline]
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The variant for a wire number, `None` for a number outside the table.
            pub const fn from_code(code: u8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The row's name.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl From<$name> for u8 {
            #[inline]
            fn from(v: $name) -> u8 {
                v.code()
            }
        }

        impl TryFrom<u8> for $name {
            /// The number outside the table.
            type Error = u8;

            #[inline]
            fn try_from(code: u8) -> Result<$name, u8> {
                $name::from_code(code).ok_or(code)
            }
        }
    };
}

pub(crate) use wire_enum;
