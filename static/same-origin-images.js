// Loaded by /redoc before the ReDoc bundle. ReDoc 2.x puts its vendor's logo in the side menu as an
// <img> from an external CDN, with no option to turn it off. Here, an image source on another origin
// becomes "data:," before the browser sees it: the image fails at once, ReDoc's onError handler drops
// it, and no request leaves the page. The page's Content-Security-Policy (img-src 'self' data:) is the
// backstop for anything this misses.
(function () {
  "use strict";
  var KEEP = ["data:", "blob:"];

  function sameOrigin(value) {
    try {
      var url = new URL(String(value), document.baseURI);
      return KEEP.indexOf(url.protocol) >= 0 || url.origin === window.location.origin ? value : "data:,";
    } catch (error) {
      return "data:,";
    }
  }

  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (this instanceof HTMLImageElement && String(name).toLowerCase() === "src") {
      value = sameOrigin(value);
    }
    return setAttribute.call(this, name, value);
  };

  var src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get: src.get,
    set: function (value) {
      src.set.call(this, sameOrigin(value));
    },
  });
})();
