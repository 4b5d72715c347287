//===- InferTypeWithDefaults.td - Type inference for ops with attributes -===//
//
// The parser infers result types before the op exists: attributes written in
// the attr-dict are still in the attribute dictionary rather than in the
// properties that adaptor getters read, default-valued attributes are unset
// and required ones may be missing. This trait works like upstream
// InferTypeOpAdaptor but hands inferReturnTypes an adaptor whose properties
// hold the attr-dict entries and the defaults and have passed the ODS
// attribute constraints.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMMON_INFERTYPEWITHDEFAULTS
#define MOEC_COMMON_INFERTYPEWITHDEFAULTS

include "mlir/Interfaces/InferTypeOpInterface.td"

def InferTypeWithDefaults : TraitList<[
  DeclareOpInterfaceMethods<InferTypeOpInterface>,
  NativeOpTrait<"InferTypeOpAdaptor", [],
    /*extraOpDeclaration=*/[{
      static ::llvm::LogicalResult
      inferReturnTypes(::mlir::MLIRContext *context,
                       std::optional<::mlir::Location> location,
                       Adaptor adaptor,
                       ::llvm::SmallVectorImpl<::mlir::Type> &inferredReturnTypes);
    }],
    /*extraOpDefinition=*/[{
      ::llvm::LogicalResult $cppClass::inferReturnTypes(
          ::mlir::MLIRContext *context, std::optional<::mlir::Location> location,
          ::mlir::ValueRange operands, ::mlir::DictionaryAttr attributes,
          ::mlir::OpaqueProperties properties, ::mlir::RegionRange regions,
          ::llvm::SmallVectorImpl<::mlir::Type> &inferredReturnTypes) {
        ::mlir::Location loc =
            location ? *location : ::mlir::UnknownLoc::get(context);
        Properties completed;
        if (auto *given = properties.as<Properties *>())
          completed = *given;
        if (attributes &&
            ::mlir::failed(setPropertiesFromAttr(completed, attributes, [&] {
              return ::mlir::emitError(loc)
                     << "'" << getOperationName() << "' op ";
            })))
          return ::mlir::failure();
        populateDefaultProperties(
            ::mlir::OperationName(getOperationName(), context), completed);
        $cppClass::Adaptor adaptor(operands, attributes, completed, regions);
        if (::mlir::failed(adaptor.verify(loc)))
          return ::mlir::failure();
        return $cppClass::inferReturnTypes(context, location, adaptor,
                                           inferredReturnTypes);
      }
    }]>
]>;

#endif // MOEC_COMMON_INFERTYPEWITHDEFAULTS
