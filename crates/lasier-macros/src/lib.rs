//! The `#[circuit_breaker(BREAKER)]` attribute: the decorator form of the
//! Python original, for lasier's sync and async circuit breakers.
//!
//! ```
//! use std::sync::LazyLock;
//! use lasier_macros::circuit_breaker;
//! use lasier_sync::{CircuitBreaker, Error};
//!
//! static PAYMENTS: LazyLock<CircuitBreaker> = LazyLock::new(|| {
//!     CircuitBreaker::builder("payments")
//!         .max_failures(2)
//!         .build()
//!         .expect("a valid configuration")
//! });
//!
//! #[derive(Debug)]
//! struct Declined;
//!
//! /// The body returns `Result<u64, Declined>`; callers get
//! /// `Result<u64, Error<Declined>>`, which adds the rejection.
//! #[circuit_breaker(PAYMENTS)]
//! fn charge(cents: u64) -> Result<u64, Error<Declined>> {
//!     if cents > 1_000 {
//!         return Err(Declined);
//!     }
//!     Ok(cents)
//! }
//!
//! assert_eq!(charge(500).unwrap(), 500);
//! assert!(matches!(charge(5_000), Err(Error::Inner(Declined))));
//! assert!(matches!(charge(5_000), Err(Error::Inner(Declined))));
//! // Two failures: the circuit is open, and the body does not run.
//! assert!(charge(500).unwrap_err().is_open());
//! ```
//!
//! # The return type
//!
//! The fn's signature is what its callers get, as written: the attribute
//! never rewrites it. The body is written as the guarded call, returning
//! `Result<T, E>` (with `?`, `return Err(..)`, `Ok(..)` as usual), and the
//! fn declares `Result<T, Error<E>>`, the breaker's own result: `Error<E>`
//! is `Error::Inner(E)` for the body's error, `Error::Open` when the
//! circuit rejected the call (the body did not run) and `Error::Storage`
//! when the breaker's storage failed. Callers have to handle the rejection,
//! so the signature shows it; and docs, IDEs and type aliases see the real
//! type.
//!
//! Any path whose last segment is `Result` is accepted as the return type
//! (`Result`, `std::result::Result`, `io::Result`, ...): that is how the
//! attribute recognizes a fallible fn. The compiler checks the rest: a
//! return type such as `Result<T, E>`, without the breaker's `Error`, is a
//! type mismatch (expected `Result<T, E>`, found `Result<T, Error<E>>`)
//! pointing at the breaker and at the return type.
//!
//! # What it expands to
//!
//! ```text
//! #[circuit_breaker(BREAKER)]            fn f(..) -> R { body }
//!   sync fn:                             fn f(..) -> R { BREAKER.call(|| { body }) }
//!   async fn:                      async fn f(..) -> R { BREAKER.call(async { body }).await }
//!
//! #[circuit_breaker(BREAKER, is_failure = PREDICATE)]
//!   sync fn:                             fn f(..) -> R { BREAKER.call_filtered(PREDICATE, || { body }) }
//!   async fn:                      async fn f(..) -> R { BREAKER.call_filtered(PREDICATE, async { body }).await }
//! ```
//!
//! The expansion calls a method on `BREAKER` and names no crate, so it
//! works with `lasier`, `lasier-sync` or `lasier-async` however they are
//! imported or renamed. `BREAKER` is any expression whose value has those
//! methods: a `CircuitBreaker`, a `&CircuitBreaker`, a `static` in a
//! `LazyLock`, an `Arc`, or a field such as `self.breaker` in a method. An
//! async fn needs the async breaker (`lasier::future`, `lasier-async`), a
//! sync fn the blocking one.
//!
//! `is_failure` is the original's `catch_exceptions`: a predicate on `&E`
//! telling which errors count as failures (the default counts every `Err`).
//!
//! The closure or `async` block captures only what the body uses, field by
//! field, so a method taking `&self`, `&mut self` or `self` can use a
//! breaker stored in `self` and still use its other fields in the body.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, Item, ItemFn, ReturnType, Token, Type};

/// Guards a fn returning `Result` with a circuit breaker: the body runs as
/// `BREAKER.call(..)`.
///
/// `#[circuit_breaker(BREAKER)]` or
/// `#[circuit_breaker(BREAKER, is_failure = PREDICATE)]`, on a sync or
/// async fn (free fn, method, generic fn) that returns
/// `Result<T, Error<E>>` and whose body returns `Result<T, E>`. See the
/// [crate docs](crate) for the expansion and the rules.
///
/// ```
/// use lasier_async::{CircuitBreaker, Error};
/// use lasier_macros::circuit_breaker;
///
/// struct Inventory {
///     breaker: CircuitBreaker,
/// }
///
/// impl Inventory {
///     #[circuit_breaker(self.breaker)]
///     async fn stock(&self, sku: &str) -> Result<u32, Error<std::num::ParseIntError>> {
///         let count: u32 = sku.parse()?;
///         Ok(count)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let inventory = Inventory {
///     breaker: CircuitBreaker::builder("inventory").max_failures(1).build()?,
/// };
/// assert_eq!(inventory.stock("42").await?, 42);
/// assert!(inventory.stock("x").await.unwrap_err().inner().is_some());
/// assert!(inventory.stock("42").await.unwrap_err().is_open());
/// # Ok(())
/// # }
/// ```
#[proc_macro_attribute]
pub fn circuit_breaker(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into()).into()
}

const USAGE: &str = "write `#[circuit_breaker(BREAKER)]`, where `BREAKER` is an expression \
                     giving a `CircuitBreaker` or a `&CircuitBreaker` (a `static`, \
                     `self.breaker`, ...)";

const RETURN_TYPE: &str = "#[circuit_breaker] needs a fn returning `Result`: declare \
                           `Result<T, lasier::Error<E>>` and let the body return \
                           `Result<T, E>`";

/// The attribute's arguments.
struct Args {
    breaker: Expr,
    is_failure: Option<Expr>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                format!("#[circuit_breaker] is missing its breaker: {USAGE}"),
            ));
        }
        let breaker: Expr = input.parse()?;
        if let Expr::Assign(assign) = &breaker {
            return Err(syn::Error::new_spanned(
                assign,
                format!("the breaker comes first, alone: {USAGE}"),
            ));
        }
        let mut is_failure = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: Ident = input.parse()?;
            if key != "is_failure" {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown option `{key}`: the only option is \
                         `is_failure = PREDICATE`, a predicate on `&E`"
                    ),
                ));
            }
            if is_failure.is_some() {
                return Err(syn::Error::new(key.span(), "`is_failure` is given twice"));
            }
            input.parse::<Token![=]>()?;
            is_failure = Some(input.parse::<Expr>()?);
        }
        Ok(Self {
            breaker,
            is_failure,
        })
    }
}

fn expand(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let item = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => function,
        Ok(other) => {
            let error = syn::Error::new_spanned(
                item_head(&other),
                "#[circuit_breaker] applies to a fn (sync or async) returning `Result`",
            );
            return with_error(error, other.into_token_stream());
        }
        // Not an item at all (e.g. a trait method without a body).
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[circuit_breaker] applies to a fn with a body, returning `Result`",
            );
            return with_error(error, item);
        }
    };
    let result = syn::parse2::<Args>(args)
        .and_then(|args| check_signature(&item).map(|()| args))
        .map(|args| guard(item.clone(), &args));
    match result {
        Ok(tokens) => tokens,
        // The fn itself is kept, so that its callers report no second error.
        Err(error) => with_error(error, item.into_token_stream()),
    }
}

/// The compile error, and the item as it was.
fn with_error(error: syn::Error, item: TokenStream2) -> TokenStream2 {
    let error = error.into_compile_error();
    quote!(#error #item)
}

/// Where to point at an item that is not a fn: its keyword and name.
fn item_head(item: &Item) -> TokenStream2 {
    fn head(keyword: impl ToTokens, name: &Ident) -> TokenStream2 {
        quote!(#keyword #name)
    }
    match item {
        Item::Struct(s) => head(s.struct_token, &s.ident),
        Item::Enum(e) => head(e.enum_token, &e.ident),
        Item::Union(u) => head(u.union_token, &u.ident),
        Item::Trait(t) => head(t.trait_token, &t.ident),
        Item::Mod(m) => head(m.mod_token, &m.ident),
        Item::Static(s) => head(s.static_token, &s.ident),
        Item::Const(c) => head(c.const_token, &c.ident),
        Item::Type(t) => head(t.type_token, &t.ident),
        Item::Impl(i) => i.impl_token.into_token_stream(),
        other => other.to_token_stream(),
    }
}

fn check_signature(item: &ItemFn) -> syn::Result<()> {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new_spanned(
            constness,
            "#[circuit_breaker] cannot guard a `const fn`: the breaker runs at run time",
        ));
    }
    match &sig.output {
        ReturnType::Default => Err(syn::Error::new(sig.ident.span(), RETURN_TYPE)),
        ReturnType::Type(_, ty) if is_result(ty) => Ok(()),
        ReturnType::Type(_, ty) => Err(syn::Error::new_spanned(ty, RETURN_TYPE)),
    }
}

/// Whether `ty` is a path ending in `Result`: `Result<..>`, `io::Result<..>`.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        Type::Paren(inner) => is_result(&inner.elem),
        Type::Group(inner) => is_result(&inner.elem),
        _ => false,
    }
}

/// The fn, its body run by the breaker.
fn guard(mut item: ItemFn, args: &Args) -> TokenStream2 {
    let breaker = receiver(&args.breaker);
    let body = &item.block;
    // Errors about the breaker (no `call` method, a sync breaker on an async
    // fn) point at the attribute's argument; errors in the body keep their
    // own spans.
    let at = args.breaker.span();
    // Not `async move`: like the closure, the block captures only what the
    // body uses, so that a `&mut self` method can use `self.breaker`.
    let guarded = if item.sig.asyncness.is_some() {
        quote!(async { #body })
    } else {
        quote!(|| #body)
    };
    let call = match &args.is_failure {
        None => quote_spanned!(at=> #breaker.call(#guarded)),
        Some(is_failure) => quote_spanned!(at=> #breaker.call_filtered(#is_failure, #guarded)),
    };
    let call = if item.sig.asyncness.is_some() {
        quote_spanned!(at=> #call.await)
    } else {
        call
    };
    *item.block = syn::parse_quote!({ #call });
    item.into_token_stream()
}

/// `breaker` as a method receiver: in parentheses unless it binds tighter
/// than a method call already (so `&BREAKER` means `(&BREAKER).call(..)`).
fn receiver(breaker: &Expr) -> TokenStream2 {
    match breaker {
        Expr::Path(_)
        | Expr::Field(_)
        | Expr::MethodCall(_)
        | Expr::Call(_)
        | Expr::Index(_)
        | Expr::Paren(_)
        | Expr::Macro(_) => breaker.to_token_stream(),
        _ => quote!((#breaker)),
    }
}
